"""chat calls in flight: one row per place a user's running chat call holds

Revision ID: 0a6c9e3f5b71
Revises: 5d2f8b6a4c1e
Create Date: 2026-12-04 23:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0a6c9e3f5b71'
down_revision = '5d2f8b6a4c1e'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('chat_calls',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=False),
    sa.Column('holder', sa.Uuid(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chat_calls_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'slot', name=op.f('pk_chat_calls'))
    )


def downgrade():
    op.drop_table('chat_calls')
