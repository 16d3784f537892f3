"""The webhook gateway over HTTP (PRODUCT.md §2 Webhook gateway), with a real worker."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
import uuid

import orjson
import pytest

from backoffice import work
from backoffice.extensions import db
from backoffice.webhooks import service
from backoffice.webhooks.models import WebhookEvent
from tests.support import assert_problem, count_rows, signed_headers, wait_for_event

SECRET = "whsec_" + base64.b64encode(b"acme-shared-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody-else-entirely-000000").decode()


def stored() -> int:
    return count_rows(WebhookEvent)


def signed(body: bytes, secret: str = SECRET, msg_id: str | None = None, at: int | None = None):
    return signed_headers(secret, body, msg_id, at)


@pytest.fixture
def gateway(make_app, database_url, queue_settings):
    """The app as a partner sees it: `acme` signs, `default` may deliver unsigned."""
    return make_app(
        DATABASE_URL=database_url,
        WEBHOOK_SECRETS=json.dumps({"acme": SECRET}),
        WEBHOOK_UNSIGNED_SOURCES="default",
        **queue_settings,
    ).test_client()


def post(client, path: str, body: bytes, headers=None):
    return client.post(path, data=body, headers=headers or {}, content_type="application/json")


def test_a_signed_delivery_is_stored_then_acknowledged(gateway, in_db):
    body = orjson.dumps({"type": "invoice.paid", "amount": 42})
    response = post(gateway, "/api/webhooks/acme", body, signed(body, msg_id="msg_1"))
    assert response.status_code == 201
    assert response.json["status"] == "success"
    event_id = uuid.UUID(response.json["id"])
    raw = in_db(lambda: db.session.get(WebhookEvent, event_id).raw_body)
    event = in_db(lambda: db.session.get(WebhookEvent, event_id))
    assert (event.source, event.delivery_id, event.event_type) == ("acme", "msg_1", "invoice.paid")
    assert event.payload == {"type": "invoice.paid", "amount": 42}
    assert raw == body


def test_a_redelivery_is_a_duplicate_and_stored_once(gateway, in_db):
    body = b'{"type": "ping"}'
    headers = signed(body, msg_id="msg_dup")
    first = post(gateway, "/api/webhooks/acme", body, headers)
    again = post(gateway, "/api/webhooks/acme", body, headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json == {"status": "duplicate", "id": first.json["id"]}
    assert in_db(stored) == 1


def test_concurrent_copies_of_one_delivery_store_one_event(gateway, in_db):
    body = b'{"type": "race"}'
    headers = signed(body, msg_id="msg_race")
    results: list[int] = []
    barrier = threading.Barrier(6)

    def deliver() -> None:
        barrier.wait()
        results.append(
            post(gateway.application.test_client(), "/api/webhooks/acme", body, headers).status_code
        )

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] * 5 + [201]
    assert in_db(stored) == 1


@pytest.mark.parametrize(
    "forge",
    [
        "wrong_secret",
        "tampered_body",
        "stale",
        "future",
        "no_id",
        "no_timestamp",
        "no_signature",
        "unsigned",
    ],
)
def test_a_bad_signature_is_401_and_stores_nothing(gateway, in_db, forge):
    body = b'{"type": "x"}'
    headers = signed(body)
    now = int(time.time())
    if forge == "wrong_secret":
        headers = signed(body, secret=OTHER_SECRET)
    elif forge == "tampered_body":
        body = b'{"type": "y"}'
    elif forge == "stale":
        headers = signed(body, at=now - 3600)
    elif forge == "future":
        # Far past the tolerance: `now + 301` was let in when the request reached the
        # server a moment later than `now`, truncated to the second, was taken. The exact
        # 300 s bounds are tested with a fixed clock in test_signatures.py.
        headers = signed(body, at=now + 3600)
    elif forge.startswith("no_"):
        del headers[f"webhook-{forge[3:]}"]
    else:
        headers = {}
    response = post(gateway, "/api/webhooks/acme", body, headers)
    assert_problem(response, 401)
    assert response.json["type"] == "/problems/invalid-signature" or forge == "unsigned"
    assert in_db(stored) == 0


def test_several_signatures_are_accepted_when_one_matches(gateway):
    body = b'{"type": "rotated"}'
    headers = signed(body)
    old = signed(
        body,
        secret=OTHER_SECRET,
        msg_id=headers["webhook-id"],
        at=int(headers["webhook-timestamp"]),
    )
    headers["webhook-signature"] = f"{old['webhook-signature']} {headers['webhook-signature']}"
    assert post(gateway, "/api/webhooks/acme", body, headers).status_code == 201


def test_the_default_source_takes_unsigned_events_where_configured(gateway, in_db):
    body = b'{"id": "evt_1", "type": "payment_success", "order_id": "o-1"}'
    first = post(gateway, "/api/webhook", body)
    assert first.status_code == 201
    assert post(gateway, "/api/webhook", body).json == {
        "status": "duplicate",
        "id": first.json["id"],
    }
    event = in_db(lambda: db.session.get(WebhookEvent, uuid.UUID(first.json["id"])))
    assert (event.source, event.delivery_id) == ("default", "evt_1")


def test_unsigned_deliveries_are_refused_unless_configured(client, in_db):
    # The testing profile, like production, lists no unsigned source.
    assert_problem(post(client, "/api/webhook", b'{"id": "e"}'), 401)
    assert_problem(post(client, "/api/webhooks/unknown", b'{"id": "e"}'), 401)
    assert in_db(stored) == 0


@pytest.mark.parametrize("body", [b"", b"   ", b"not json", b"[1, 2]", b'"text"'])
def test_an_empty_or_non_json_body_is_400(gateway, in_db, body):
    assert_problem(post(gateway, "/api/webhook", body), 400)
    assert in_db(stored) == 0


def test_a_malformed_source_is_404(gateway):
    assert_problem(post(gateway, "/api/webhooks/Bad!Source", b"{}"), 404)


def test_an_event_is_processed_by_its_handler_in_the_worker(
    gateway, worker, as_user, admin, tmp_path
):
    trace = tmp_path / "trace.txt"
    body = orjson.dumps({"id": "evt_slow", "type": "slow", "trace": str(trace)})
    event_id = post(gateway, "/api/webhook", body).json["id"]
    event = wait_for_event(as_user(admin), event_id, "processed")
    assert event["attempts"] == 1
    assert event["finished_at"] >= event["started_at"] >= event["created_at"]
    assert event["last_error"] is None
    assert trace.read_text().split() == ["start", "end"]


def test_an_event_type_no_handler_knows_is_ignored_not_processed(gateway, worker, as_user, admin):
    body = b'{"id": "evt_proc", "type": "nobody.handles.this"}'
    event_id = post(gateway, "/api/webhook", body).json["id"]
    viewer = as_user(admin)
    event = wait_for_event(viewer, event_id, "ignored")
    assert event["attempts"] == 1
    assert event["finished_at"] is not None
    listed = viewer.get("/api/webhooks/events?status=ignored").json["data"]
    assert [e["id"] for e in listed] == [event_id]
    assert viewer.get("/api/webhooks/events?status=processed").json["data"] == []


def test_an_ignored_event_is_processed_when_replayed_after_its_handler_is_registered(
    app, make_app, database_url, tmp_path, monkeypatch, as_user, admin
):
    # Delivered through a broker no worker reads: only this test processes the event.
    unread = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_UNSIGNED_SOURCES="default",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'unread.db'}",
    )
    gateway = unread.test_client()
    event_id = post(gateway, "/api/webhook", b'{"id": "evt_late", "type": "late"}').json["id"]
    with unread.app_context():
        assert work.process("webhooks", uuid.UUID(event_id)) is False
    viewer = as_user(admin)
    assert viewer.get(f"/api/webhooks/events/{event_id}").json["status"] == "ignored"
    handled: list[dict] = []
    monkeypatch.setitem(
        unread.extensions["webhook_handlers"], "late", lambda payload, _: handled.append(payload)
    )
    admin_client = unread.test_client()
    admin_client.environ_base.update(viewer.environ_base)
    assert admin_client.post(f"/api/webhooks/events/{event_id}/replay").status_code == 202
    assert viewer.get(f"/api/webhooks/events/{event_id}").json["status"] == "received"
    with unread.app_context():
        assert work.process("webhooks", uuid.UUID(event_id)) is False
    event = viewer.get(f"/api/webhooks/events/{event_id}").json
    assert (event["status"], event["attempts"]) == ("processed", 2)
    assert handled == [{"id": "evt_late", "type": "late"}]


def test_admins_list_filter_read_and_replay_events(gateway, as_user, admin, client, worker):
    for n, kind in enumerate(["a.created", "b.created", "a.created"]):
        post(gateway, "/api/webhook", orjson.dumps({"id": f"evt_{n}", "type": kind}))
    viewer = as_user(admin)
    everything = viewer.get("/api/webhooks/events").json["data"]
    assert len(everything) == 3
    only_a = viewer.get("/api/webhooks/events?type=a.created&source=default").json["data"]
    assert [event["delivery_id"] for event in only_a] == ["evt_2", "evt_0"]
    one = viewer.get(f"/api/webhooks/events/{only_a[0]['id']}").json
    assert one["payload"] == {"id": "evt_2", "type": "a.created"}
    processed = wait_for_event(viewer, one["id"], "ignored")
    replayed = viewer.post(f"/api/webhooks/events/{one['id']}/replay")
    assert replayed.status_code == 202
    again = wait_for_event(viewer, one["id"], "ignored")
    assert again["attempts"] == processed["attempts"] + 1
    assert_problem(client.get("/api/webhooks/events"), 403)
    assert_problem(viewer.get(f"/api/webhooks/events/{uuid.uuid4()}"), 404)
    assert_problem(viewer.get("/api/webhooks/events?status=lost"), 400)


def test_a_failing_handler_is_retried_then_marked_failed(
    app, make_app, database_url, tmp_path, monkeypatch, in_db
):
    # Delivered through a broker no worker reads: only this test processes the event.
    gateway = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_UNSIGNED_SOURCES="default",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'unread.db'}",
    ).test_client()
    calls: list[dict] = []

    def explode(payload: dict, attempt: work.Attempt) -> None:
        calls.append(payload)
        raise RuntimeError("partner sent nonsense")

    monkeypatch.setitem(app.extensions["webhook_handlers"], "explodes", explode)
    event_id = uuid.UUID(
        post(gateway, "/api/webhook", b'{"id": "evt_x", "type": "explodes"}').json["id"]
    )
    attempts = service.QUEUE.max_attempts
    with app.app_context():
        retries = [work.process("webhooks", event_id) for _ in range(attempts)]
    assert retries == [True] * (attempts - 1) + [False]
    event = in_db(lambda: db.session.get(WebhookEvent, event_id))
    assert (event.status, event.attempts) == ("failed", attempts)
    assert event.last_error == "RuntimeError: partner sent nonsense"
    assert event.finished_at is not None
    assert len(calls) == attempts


def test_a_broker_failing_with_any_error_still_answers_201_and_leaves_it_to_the_relay(
    make_app, database_url, tmp_path, in_db
):
    """The embedded broker can fail with its database's errors, not kombu's: two processes
    declaring its queue at once, one got IntegrityError from the queue table's unique name.
    Here a trigger refuses that insert the same way. The event is committed, so the answer
    is 201 and the unstamped row waits for the relay, never a 500."""
    broker = tmp_path / "broker.db"
    with sqlite3.connect(broker) as connection:
        connection.executescript(
            """
            CREATE TABLE kombu_queue (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(200) UNIQUE);
            CREATE TRIGGER declared_elsewhere BEFORE INSERT ON kombu_queue
            BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: kombu_queue.name'); END;
            """
        )
    client = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_SECRETS=json.dumps({"acme": SECRET}),
        CELERY_BROKER_URL=f"sqla+sqlite:///{broker}",
    ).test_client()
    body = b'{"type": "ping"}'
    response = post(client, "/api/webhooks/acme", body, signed(body))
    assert response.status_code == 201, response.data
    event = in_db(lambda: db.session.get(WebhookEvent, uuid.UUID(response.json["id"])))
    assert (event.status, event.enqueued_at) == ("received", None)
