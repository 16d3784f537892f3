"""The webhook gateway over HTTP (PRODUCT.md §2 Webhook gateway), with a real worker."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid

import orjson
import pytest
from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.webhooks import service
from backoffice.webhooks.handlers import HANDLERS
from backoffice.webhooks.models import WebhookEvent
from backoffice.webhooks.signatures import sign
from tests.items.test_routes import assert_problem

SECRET = "whsec_" + base64.b64encode(b"acme-shared-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody-else-entirely-000000").decode()


def stored() -> int:
    return db.session.scalar(select(func.count()).select_from(WebhookEvent)) or 0


def signed(body: bytes, secret: str = SECRET, msg_id: str | None = None, at: int | None = None):
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = int(time.time()) if at is None else at
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(at),
        "webhook-signature": sign(secret, msg_id, at, body),
    }


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


def wait_for_status(client, event_id: str, wanted: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/webhooks/events/{event_id}").json
        if body["status"] == wanted:
            return dict(body)
        time.sleep(0.1)
    raise AssertionError(f"event {event_id} never became {wanted}: {body}")


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
        headers = signed(body, at=now - 301)
    elif forge == "future":
        headers = signed(body, at=now + 301)
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


def test_stored_events_are_processed_by_the_worker(gateway, worker, as_user, admin):
    body = b'{"id": "evt_proc", "type": "nobody.handles.this"}'
    event_id = post(gateway, "/api/webhook", body).json["id"]
    event = wait_for_status(as_user(admin), event_id, "processed")
    assert event["attempts"] == 1
    assert event["processed_at"] is not None


def test_an_event_accepted_while_the_broker_is_down_is_still_processed(
    make_app, database_url, worker, as_user, admin
):
    down = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_UNSIGNED_SOURCES="default",
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",
    ).test_client()
    response = post(down, "/api/webhook", b'{"id": "evt_down", "type": "x"}')
    assert response.status_code == 201
    wait_for_status(as_user(admin), response.json["id"], "processed")


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
    processed = wait_for_status(viewer, one["id"], "processed")
    replayed = viewer.post(f"/api/webhooks/events/{one['id']}/replay")
    assert replayed.status_code == 202
    again = wait_for_status(viewer, one["id"], "processed")
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

    def explode(payload: dict) -> None:
        calls.append(payload)
        raise RuntimeError("partner sent nonsense")

    monkeypatch.setitem(HANDLERS, "explodes", explode)
    event_id = uuid.UUID(
        post(gateway, "/api/webhook", b'{"id": "evt_x", "type": "explodes"}').json["id"]
    )
    with app.app_context():
        retries = [service.process(event_id) for _ in range(service.MAX_ATTEMPTS)]
    assert retries == [True] * (service.MAX_ATTEMPTS - 1) + [False]
    event = in_db(lambda: db.session.get(WebhookEvent, event_id))
    assert (event.status, event.attempts) == ("failed", service.MAX_ATTEMPTS)
    assert event.last_error == "RuntimeError: partner sent nonsense"
    assert len(calls) == service.MAX_ATTEMPTS
