"""activity figures: the console overview's numbers over time, tallied by the workers

One small row per series, hour and label (`backoffice.activity`): the overview reads a
few hundred of them instead of grouping a day of webhook events. Kept 8 days (retention).

Revision ID: 3e9a7c1b5d20
Revises: 0a6c9e3f5b71
Create Date: 2026-12-06 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3e9a7c1b5d20'
down_revision = '0a6c9e3f5b71'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('activity_figures',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('series', sa.String(length=64), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activity_figures')),
    sa.UniqueConstraint('series', 'hour', 'label', name=op.f('uq_activity_figures_series_hour_label'))
    )
    op.create_index('ix_activity_figures_hour', 'activity_figures', ['hour'], unique=False)


def downgrade():
    op.drop_index('ix_activity_figures_hour', table_name='activity_figures')
    op.drop_table('activity_figures')
