"""chat usage: one row per chat call, with the tokens it spent, per user

Revision ID: b7d4e2a9c6f1
Revises: 5c0f3a9d7e21
Create Date: 2026-11-22 03:05:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7d4e2a9c6f1'
down_revision = '5c0f3a9d7e21'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('chat_usage',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('streamed', sa.Boolean(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('total_tokens', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("outcome IN ('completed', 'failed', 'timed_out', 'cancelled')", name=op.f('ck_chat_usage_outcome_known')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chat_usage_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_usage'))
    )
    with op.batch_alter_table('chat_usage', schema=None) as batch_op:
        batch_op.create_index('ix_chat_usage_user_id_id', ['user_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('chat_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_chat_usage_user_id_id')

    op.drop_table('chat_usage')
