"""Orders are paid by the partner's `payment_success` webhook, once, through a real worker."""

from __future__ import annotations

import base64
import json
import uuid

import orjson
import pytest

from backoffice import work
from tests.items.factories import create_item
from tests.support import signed_headers, wait_for_event

SECRET = "whsec_" + base64.b64encode(b"payments-partner-secret-000000").decode()


@pytest.fixture
def partner(make_app, database_url, queue_settings):
    """The gateway as the payment partner sees it: `payments` signs, `default` may not."""
    return make_app(
        DATABASE_URL=database_url,
        WEBHOOK_SECRETS=json.dumps({"payments": SECRET}),
        WEBHOOK_UNSIGNED_SOURCES="default",
        **queue_settings,
    )


def deliver(app, payload: dict, msg_id: str | None = None):
    body = orjson.dumps(payload)
    headers = signed_headers(SECRET, body, msg_id)
    return app.test_client().post(
        "/api/webhooks/payments", data=body, headers=headers, content_type="application/json"
    )


def place(client, quantity: int = 2) -> dict:
    item = create_item(client, quantity=10)
    response = client.post(
        "/api/orders", json={"lines": [{"item_id": item["id"], "quantity": quantity}]}
    )
    assert response.status_code == 201
    return dict(response.json)


def test_a_signed_payment_marks_the_order_paid_once(partner, worker, client, as_user, admin):
    order = place(client)
    payload = {
        "type": "payment_success",
        "data": {"order_id": order["id"], "payment_id": "pi_123", "amount": 4200},
    }
    first = deliver(partner, payload, msg_id="msg_pay_1")
    assert first.status_code == 201
    viewer = as_user(admin)
    event = wait_for_event(viewer, first.json["id"], "processed")
    paid = client.get(f"/api/orders/{order['id']}")
    assert paid.json["status"] == "paid"
    assert paid.json["payment_reference"] == "pi_123"
    assert paid.json["paid_at"] is not None
    # The partner delivers the same event again: a duplicate, not processed again.
    again = deliver(partner, payload, msg_id="msg_pay_1")
    assert again.json == {"status": "duplicate", "id": first.json["id"]}
    # An admin replays it: processed again, and the order does not change.
    assert viewer.post(f"/api/webhooks/events/{event['id']}/replay").status_code == 202
    replayed = wait_for_event(viewer, event["id"], "processed")
    assert replayed["attempts"] == event["attempts"] + 1
    unchanged = client.get(f"/api/orders/{order['id']}")
    assert unchanged.json == paid.json
    assert unchanged.headers["ETag"] == paid.headers["ETag"]
    # A second, different payment event for the same order changes nothing either.
    second = deliver(partner, {"type": "payment_success", "data": {"order_id": order["id"]}})
    wait_for_event(viewer, second.json["id"], "processed")
    assert client.get(f"/api/orders/{order['id']}").json == paid.json


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unknown", "does not exist"),
        ("cancelled", "was cancelled"),
        ("no_order_id", "no valid order_id"),
        ("bad_order_id", "no valid order_id"),
        ("nul_payment_id", "payment_id holding a control character (U+0000)"),
        ("line_break_payment_id", "payment_id holding a control character (U+000A)"),
        ("long_payment_id", "payment_id of 256 characters (1 to 255)"),
        ("empty_payment_id", "payment_id of 0 characters (1 to 255)"),
        ("object_payment_id", "payment_id that is an object, not a string"),
        ("array_payment_id", "payment_id that is an array, not a string"),
        ("number_payment_id", "payment_id that is a number, not a string"),
    ],
)
def test_a_payment_that_can_never_apply_fails_at_once_with_its_reason(
    make_app, database_url, tmp_path, client, as_user, admin, case, reason
):
    # A broker no worker reads: this test processes the event itself, as a worker would.
    gateway = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_UNSIGNED_SOURCES="default",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'unread.db'}",
    )
    order = place(client)
    payload: dict = {"id": f"evt_{case}", "event": "payment_success", "order_id": order["id"]}
    if case == "unknown":
        payload["order_id"] = str(uuid.uuid4())
    elif case == "cancelled":
        client.post(f"/api/orders/{order['id']}/cancel")
    elif case == "no_order_id":
        del payload["order_id"]
    elif case in BAD_PAYMENT_IDS:  # stored with the event as sent; the order cannot keep it
        payload["payment_id"] = BAD_PAYMENT_IDS[case]
    else:
        payload["order_id"] = "order-42"
    response = gateway.test_client().post("/api/webhook", json=payload)
    event_id = uuid.UUID(response.json["id"])
    with gateway.app_context():
        assert work.process("webhooks", event_id) is False  # not retried
    event = as_user(admin).get(f"/api/webhooks/events/{event_id}").json
    assert (event["status"], event["attempts"]) == ("failed", 1)
    assert reason in event["last_error"]
    failed = as_user(admin).get("/api/webhooks/events?status=failed").json["data"]
    assert [e["id"] for e in failed] == [str(event_id)]
    order_now = client.get(f"/api/orders/{order['id']}").json
    assert order_now["status"] == ("cancelled" if case == "cancelled" else "pending")
    assert (order_now["paid_at"], order_now["payment_reference"]) == (None, None)


#: payment_ids the order cannot keep as sent (the event fails instead of cutting one to 255
#: characters or storing an object as Python's rendering of it).
BAD_PAYMENT_IDS = {
    "nul_payment_id": "pi_\u0000",
    "line_break_payment_id": "pi_\n2",
    "long_payment_id": "p" * 256,
    "empty_payment_id": "",
    "object_payment_id": {"id": "pi_1", "amount": 4200},
    "array_payment_id": ["pi_1"],
    "number_payment_id": 4200,
}


def test_a_payment_id_of_255_characters_is_kept_whole(make_app, database_url, tmp_path, client):
    gateway = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_UNSIGNED_SOURCES="default",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'unread.db'}",
    )
    order = place(client)
    reference = "pi_" + "é" * 252  # 255 characters, 507 bytes in UTF-8
    payload = {"id": "evt_long", "event": "payment_success", "order_id": order["id"]}
    response = gateway.test_client().post("/api/webhook", json={**payload, "payment_id": reference})
    with gateway.app_context():
        assert work.process("webhooks", uuid.UUID(response.json["id"])) is False  # done
    paid = client.get(f"/api/orders/{order['id']}").json
    assert (paid["status"], paid["payment_reference"]) == ("paid", reference)
