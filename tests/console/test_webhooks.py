"""The webhook events pages (admins): filter, read one with its payload as text, replay
one or every failed one matching the filter; what the database holds after each."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.webhooks.models import WebhookEvent
from tests.console.conftest import Console

XSS = "<script>alert('x')</script>"


@pytest.fixture
def unserved(app, make_app, database_url, tmp_path):
    """The app on a broker no worker reads: a replayed event stays as the replay left it."""
    return make_app(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'nobody-reads.db'}",
    )


@pytest.fixture
def as_admin(unserved, admin) -> Console:
    browser = Console(unserved.test_client())
    browser.sign_in(admin)
    return browser


@pytest.fixture
def as_member(unserved, member) -> Console:
    browser = Console(unserved.test_client())
    browser.sign_in(member)
    return browser


@pytest.fixture
def add_event(in_db):
    def add(
        status: str = "failed",
        source: str = "acme",
        event_type: str | None = "invoice.paid",
        payload: dict[str, Any] | None = None,
        last_error: str | None = "KeyError: 'order'",
    ) -> uuid.UUID:
        body = payload or {"type": event_type}

        def store() -> uuid.UUID:
            event = WebhookEvent(
                source=source,
                delivery_id=uuid.uuid4().hex,
                event_type=event_type,
                payload=body,
                raw_body=orjson.dumps(body),
                status=status,
                attempts=5 if status == "failed" else 1,
                last_error=last_error if status == "failed" else None,
            )
            db.session.add(event)
            db.session.commit()
            return event.id

        return in_db(store)

    return add


def stored(in_db) -> dict[uuid.UUID, tuple[str, str | None]]:
    def read() -> dict[uuid.UUID, tuple[str, str | None]]:
        rows = db.session.execute(
            select(WebhookEvent.id, WebhookEvent.status, WebhookEvent.last_error)
        )
        return {row.id: (row.status, row.last_error) for row in rows}

    return dict(in_db(read))


def test_the_list_filters_and_pages_on_with_the_filter(as_admin, add_event):
    failed = [add_event(), add_event()]
    add_event(source="default")
    add_event(status="processed")
    page = as_admin.get("/console/webhooks?source=acme&status=failed&limit=1")
    assert page.status_code == 200
    assert "<h1>Webhook events</h1>" in page.text
    assert str(failed[1]) in page.text
    assert str(failed[0]) not in page.text
    assert 'rel="next"' in page.text
    next_link = html.unescape(page.text.split('rel="next"')[0].rsplit('href="', 1)[1])
    assert "source=acme" in next_link
    assert "status=failed" in next_link
    second = as_admin.get(next_link.split('"')[0])
    assert str(failed[0]) in second.text
    assert 'rel="next"' not in second.text
    everything = as_admin.get("/console/webhooks")
    assert everything.text.count("/console/webhooks/") >= 4


def test_the_time_filter_bounds_the_list(as_admin, add_event):
    event_id = add_event()
    now = datetime.now(UTC)
    minute = "%Y-%m-%dT%H:%M"
    later = (now + timedelta(minutes=2)).strftime(minute)
    earlier = (now - timedelta(minutes=2)).strftime(minute)
    assert str(event_id) in as_admin.get(f"/console/webhooks?received_from={earlier}").text
    assert str(event_id) not in as_admin.get(f"/console/webhooks?received_from={later}").text
    assert str(event_id) not in as_admin.get(f"/console/webhooks?received_before={earlier}").text
    assert "No events." in as_admin.get(f"/console/webhooks?received_before={earlier}").text


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=exploded", "status"), ("received_from=yesterday", "received_from")],
)
def test_a_bad_filter_is_a_400_page_naming_the_field(as_admin, query, field):
    page = as_admin.get(f"/console/webhooks?{query}")
    assert page.status_code == 400
    assert f"<p>{field}:" in page.text


def test_an_event_page_shows_its_payload_as_text_and_replays_it(as_admin, add_event, in_db):
    event_id = add_event(payload={"type": "invoice.paid", "note": XSS}, last_error=XSS)
    page = as_admin.get(f"/console/webhooks/{event_id}")
    assert page.status_code == 200
    assert XSS not in page.text
    assert html.escape(XSS, quote=False) in page.text or "&lt;script&gt;" in page.text
    assert '"note": ' in html.unescape(page.text)  # pretty-printed, one key a line
    assert "<dt>Attempts</dt><dd>5</dd>" in page.text
    answer = as_admin.post(f"/console/webhooks/{event_id}/replay")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/console/webhooks/{event_id}?done=replayed"
    assert stored(in_db)[event_id] == ("received", None)
    after = as_admin.get(answer.headers["Location"])
    assert "The event was sent to be processed again." in after.text


def test_replay_every_failed_event_matching_the_filter(as_admin, add_event, in_db):
    matching = [add_event(), add_event()]
    left = [add_event(source="default"), add_event(status="processed")]
    before = stored(in_db)
    answer = as_admin.post(
        "/console/webhooks/replay-failed", {"source": "acme", "status": "failed"}
    )
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/console/webhooks?")
    assert "count=2" in answer.headers["Location"]
    after = stored(in_db)
    assert [after[event_id] for event_id in matching] == [("received", None)] * 2
    assert [after[event_id] for event_id in left] == [before[event_id] for event_id in left]
    page = as_admin.get(answer.headers["Location"])
    assert "2 failed events matching the filter were sent to be processed again." in page.text
    assert 'value="acme"' in page.text  # the filter is kept


def test_the_count_shown_is_a_number_never_the_clients_text(as_admin):
    page = as_admin.get(f"/console/webhooks?done=replayed-all&count={XSS}")
    assert "0 failed events" in page.text
    assert XSS not in page.text


def test_a_bad_replay_filter_is_422_and_replays_nothing(as_admin, add_event, in_db):
    event_id = add_event()
    answer = as_admin.post("/console/webhooks/replay-failed", {"received_from": "soon"})
    assert answer.status_code == 422
    assert "received_from" in answer.text
    assert stored(in_db)[event_id][0] == "failed"


def test_a_replay_without_the_csrf_token_is_refused(as_admin, add_event, in_db):
    event_id = add_event()
    answer = as_admin.client.post(f"/console/webhooks/{event_id}/replay")
    assert answer.status_code == 403
    answer = as_admin.client.post("/console/webhooks/replay-failed")
    assert answer.status_code == 403
    assert stored(in_db)[event_id][0] == "failed"


def test_a_member_finds_no_webhook_pages(as_member, add_event, in_db):
    event_id = add_event()
    for path in ("/console/webhooks", f"/console/webhooks/{event_id}"):
        assert as_member.get(path).status_code == 404
    assert as_member.post(f"/console/webhooks/{event_id}/replay").status_code == 404
    assert as_member.post("/console/webhooks/replay-failed").status_code == 404
    assert stored(in_db)[event_id][0] == "failed"
    assert "/console/webhooks" not in as_member.get("/console/jobs").text


def test_an_unknown_event_is_a_404_page(as_admin):
    page = as_admin.get(f"/console/webhooks/{uuid.uuid4()}")
    assert page.status_code == 404
    assert "Not found" in page.text
