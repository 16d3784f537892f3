"""The checked-in migrations build exactly the schema the models describe."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from backoffice.database import UTCDateTime
from backoffice.extensions import db
from backoffice.webhooks.models import WebhookEvent


# Alembic cannot compare expression indexes (lower(email)); the migration creates it.
@pytest.mark.filterwarnings("ignore:autogenerate skipping")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrations_match_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert diff == []


def test_the_leased_work_migration_keeps_every_event_and_its_finish_time(app):
    """5c0f3a9d7e21 renames webhook_events.processed_at to finished_at: nothing is lost."""
    before = sa.Table(
        "webhook_events",
        sa.MetaData(),
        sa.Column("id", sa.Uuid()),
        sa.Column("source", sa.String(64)),
        sa.Column("delivery_id", sa.String(255)),
        sa.Column("event_type", sa.String(200)),
        sa.Column("payload", sa.JSON()),
        sa.Column("raw_body", sa.LargeBinary()),
        sa.Column("status", sa.String(16)),
        sa.Column("attempts", sa.Integer()),
        sa.Column("created_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime()),
        sa.Column("processed_at", UTCDateTime()),
    )
    done_at = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    event_id = uuid.uuid4()
    with app.app_context():
        flask_migrate.downgrade(revision="8d5932ec26cf")
        try:
            with db.engine.begin() as connection:
                connection.execute(
                    before.insert().values(
                        id=event_id,
                        source="default",
                        delivery_id="evt_old",
                        event_type="ping",
                        payload={"type": "ping"},
                        raw_body=b'{"type": "ping"}',
                        status="processed",
                        attempts=1,
                        created_at=done_at,
                        updated_at=done_at,
                        processed_at=done_at,
                    )
                )
        finally:
            flask_migrate.upgrade()
        event = db.session.get(WebhookEvent, event_id)
        assert event is not None
        assert (event.status, event.finished_at, event.started_at) == ("processed", done_at, None)
        db.session.remove()
