"""retention: indexes that let the pruner find what is due without reading whole tables

backoffice.housekeeping deletes, in batches, idempotency records past `expires_at` and
finished jobs and webhook events past their retention, by status and `finished_at`
(revoked_tokens.expires_at is indexed already). Without these indexes every batch, and
every oldest-due-row lookup, scans the whole table.

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction:
idempotency_records gains a row per keyed POST and may hold millions, and a plain
CREATE INDEX would block every write to it while it builds. Should a concurrent build
fail, it leaves an INVALID index behind: drop it (`DROP INDEX CONCURRENTLY <name>`) and
upgrade again.

Revision ID: e4a7c2f9b1d3
Revises: c3f8a1d6e9b2
Create Date: 2026-11-22 06:00:00.000000

"""

from alembic import op


# revision identifiers, used by Alembic.
revision = "e4a7c2f9b1d3"
down_revision = "c3f8a1d6e9b2"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_idempotency_records_expires_at", "idempotency_records", ["expires_at"]),
    ("ix_jobs_status_finished_at", "jobs", ["status", "finished_at"]),
    ("ix_webhook_events_status_finished_at", "webhook_events", ["status", "finished_at"]),
)


def _postgresql():
    return op.get_bind().dialect.name == "postgresql"


def upgrade():
    if _postgresql():
        with op.get_context().autocommit_block():
            for name, table, columns in INDEXES:
                op.create_index(name, table, columns, postgresql_concurrently=True)
        return
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade():
    if _postgresql():
        with op.get_context().autocommit_block():
            for name, table, _ in INDEXES:
                op.drop_index(name, table_name=table, postgresql_concurrently=True)
        return
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
