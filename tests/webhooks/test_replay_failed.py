"""Replaying every failed event that matches a filter (the console's "replay all"), and
the time filter that lists events received in a window as a range of their ids."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from backoffice.database import first_id_at, utcnow
from backoffice.extensions import db
from backoffice.webhooks import service
from backoffice.webhooks.models import EventStatus, WebhookEvent
from tests.support import eventually

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def id_at(moment: datetime) -> uuid.UUID:
    """A UUIDv7 as `new_id` would make it at `moment`."""
    millisecond = int(moment.timestamp() * 1000)
    return uuid.UUID(int=(millisecond << 80) | (0x7 << 76) | (0b10 << 62) | random.getrandbits(62))


@pytest.fixture
def unserved(app, make_app, database_url, tmp_path):
    """The app on a broker no worker reads: replayed events wait, as sent, to be claimed."""
    return make_app(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'nobody-reads.db'}",
    )


def add_event(
    status: str = EventStatus.FAILED,
    source: str = "acme",
    event_type: str | None = "invoice.paid",
    at: datetime = NOW,
    payload: dict[str, Any] | None = None,
) -> uuid.UUID:
    """An event as the worker leaves it (call in an app context)."""
    body = payload or {"type": event_type}
    event = WebhookEvent(
        id=id_at(at),
        source=source,
        delivery_id=uuid.uuid4().hex,
        event_type=event_type,
        payload=body,
        raw_body=orjson.dumps(body),
        status=status,
        attempts=5,
        last_error="Boom: the partner's order does not exist" if status == "failed" else None,
        enqueued_at=at,
        finished_at=at,
    )
    db.session.add(event)
    db.session.commit()
    return event.id


def statuses() -> dict[uuid.UUID, tuple[str, str | None]]:
    rows = db.session.execute(select(WebhookEvent.id, WebhookEvent.status, WebhookEvent.last_error))
    return {row.id: (row.status, row.last_error) for row in rows}


def test_only_failed_events_matching_the_filter_are_replayed(unserved):
    with unserved.app_context():
        wanted = [add_event(), add_event(at=NOW - timedelta(days=3))]
        others = [
            add_event(source="default"),
            add_event(event_type="invoice.voided"),
            add_event(status=EventStatus.PROCESSED),
            add_event(status=EventStatus.IGNORED),
        ]
        before = statuses()
        assert service.replay_failed(source="acme", event_type="invoice.paid") == 2
        after = statuses()
        for event_id in wanted:
            assert after[event_id] == ("received", None)
            event = db.session.get(WebhookEvent, event_id)
            assert event is not None
            assert event.finished_at is None
            assert event.lease_until is None
            assert event.enqueued_at is not None  # sent again
            assert event.attempts == 5  # the history of attempts is kept
        assert {event_id: after[event_id] for event_id in others} == {
            event_id: before[event_id] for event_id in others
        }
        assert service.replay_failed(source="acme", event_type="invoice.paid") == 0


def test_the_time_window_is_a_range_of_ids(unserved):
    with unserved.app_context():
        old = add_event(at=NOW - timedelta(hours=2))
        inside = add_event(at=NOW - timedelta(hours=1))
        edge = add_event(at=NOW - timedelta(minutes=30))  # the window's end: not in it
        new = add_event(at=NOW)
        window = {
            "received_from": NOW - timedelta(minutes=90),
            "received_before": NOW - timedelta(minutes=30),
        }
        page = service.list_events(25, None, **window)
        assert [row.id for row in page.data] == [inside]
        since = service.list_events(25, None, received_from=NOW - timedelta(minutes=30))
        assert [row.id for row in since.data] == [new, edge]
        assert service.replay_failed(**window) == 1
        assert statuses()[inside][0] == "received"
        assert {statuses()[i][0] for i in (old, edge, new)} == {"failed"}


def test_first_id_at_bounds_every_id_made_from_then_on():
    moment = utcnow()
    floor = first_id_at(moment)
    assert id_at(moment) > floor
    assert id_at(moment - timedelta(milliseconds=1)) < floor
    assert first_id_at(datetime(1969, 1, 1, tzinfo=UTC)) == uuid.UUID(int=0)


def test_a_time_filtered_list_pages_on_like_any_other(unserved):
    with unserved.app_context():
        made = [add_event(at=NOW - timedelta(minutes=n)) for n in range(5)]
        add_event(at=NOW - timedelta(hours=5))
        first = service.list_events(2, None, received_from=NOW - timedelta(hours=1))
        second = service.list_events(2, first.next_cursor, received_from=NOW - timedelta(hours=1))
        third = service.list_events(2, second.next_cursor, received_from=NOW - timedelta(hours=1))
        listed = [row.id for page in (first, second, third) for row in page.data]
        assert listed == made
        assert third.next_cursor is None


def test_replay_goes_in_batches_and_stops_at_most(unserved):
    with unserved.app_context():
        made = [add_event(at=NOW - timedelta(minutes=n)) for n in range(7)]
        assert service.replay_failed(batch=3, most=5) == 5
        left = [event_id for event_id in made if statuses()[event_id][0] == "failed"]
        assert len(left) == 2
        assert service.replay_failed(batch=3, most=5) == 2
        assert {statuses()[event_id][0] for event_id in made} == {"received"}


def test_replayed_events_are_processed_by_the_worker(app, worker, tmp_path, in_db):
    trace = tmp_path / "trace.txt"
    trace.touch()
    with app.app_context():
        for _ in range(3):
            add_event(event_type="slow", payload={"type": "slow", "trace": str(trace)})
        assert service.replay_failed(event_type="slow") == 3

    def now() -> list[tuple[str, str | None]]:
        return list(in_db(statuses).values())

    eventually(now, lambda seen: seen == [("processed", None)] * 3, timeout=60)
    assert Path(trace).read_text().split() == ["start", "end"] * 3
