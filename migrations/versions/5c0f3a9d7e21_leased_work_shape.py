"""leased work: webhook events take the same lease columns as jobs

Both queues now run through one engine (backoffice.work) and share its columns:
webhook_events gains started_at, and processed_at becomes finished_at (it is also set
for failed and ignored events now). Rows are kept: the column is renamed, not
recreated, and its values carried over.

Revision ID: 5c0f3a9d7e21
Revises: 8d5932ec26cf
Create Date: 2026-11-22 03:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c0f3a9d7e21'
down_revision = '8d5932ec26cf'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.alter_column('processed_at', new_column_name='finished_at')
        batch_op.add_column(sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_column('started_at')
        batch_op.alter_column('finished_at', new_column_name='processed_at')
