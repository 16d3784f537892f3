"""Orders over HTTP (PRODUCT.md §2 Orders): stock taken all or none, cancel, fulfil."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from backoffice import work
from backoffice.extensions import db
from backoffice.orders.models import Order, OrderLine
from backoffice.webhooks.models import WebhookEvent
from tests.items.factories import create_item
from tests.support import assert_problem, count_rows


def stock(client, item) -> int:
    return int(client.get(f"/api/items/{item['id']}").json["quantity"])


def order(client, *lines, note=None, **headers):
    body: dict = {"lines": [{"item_id": item["id"], "quantity": n} for item, n in lines]}
    if note is not None:
        body["note"] = note
    return client.post("/api/orders", json=body, headers=headers)


def place(client, *lines, **kwargs) -> dict:
    response = order(client, *lines, **kwargs)
    assert response.status_code == 201, response.json
    return dict(response.json)


@pytest.fixture
def pay(make_app, database_url, tmp_path, in_db) -> Callable[..., dict]:
    """Deliver a `payment_success` for an order through the gateway and process it here,
    as a worker would (a broker no worker reads: only this test processes it)."""
    gateway = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_UNSIGNED_SOURCES="default",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'payments.db'}",
    )

    def deliver(order_id: str, payment_id: str = "pay_1") -> dict:
        body = {"id": f"evt_{uuid.uuid4().hex}", "event": "payment_success", "order_id": order_id}
        response = gateway.test_client().post(
            "/api/webhook", json={**body, "payment_id": payment_id}
        )
        assert response.status_code == 201, response.json
        event_id = uuid.UUID(response.json["id"])
        with gateway.app_context():
            assert work.process("webhooks", event_id) is False
        return dict(in_db(lambda: db.session.get(WebhookEvent, event_id).__dict__))

    return deliver


def test_an_order_takes_stock_and_answers_201_with_location_and_etag(client, in_db):
    widget, gear = create_item(client, quantity=10), create_item(client, quantity=5)
    response = order(client, (widget, 3), (gear, 5), note="  For the lab  ")
    assert response.status_code == 201
    body = response.json
    assert response.headers["Location"] == f"/api/orders/{body['id']}"
    assert response.headers["ETag"]
    assert body["status"] == "pending"
    assert body["note"] == "For the lab"
    assert body["total_quantity"] == 8
    assert body["lines"] == [
        {"item_id": widget["id"], "name": widget["name"], "quantity": 3},
        {"item_id": gear["id"], "name": gear["name"], "quantity": 5},
    ]
    assert body["paid_at"] is None
    assert body["cancelled_at"] is None
    assert (stock(client, widget), stock(client, gear)) == (7, 0)
    assert in_db(lambda: count_rows(OrderLine)) == 2


def test_taking_stock_changes_the_items_etag(client):
    widget = create_item(client, quantity=10)
    before = client.get(f"/api/items/{widget['id']}").headers["ETag"]
    place(client, (widget, 1))
    assert client.get(f"/api/items/{widget['id']}").headers["ETag"] != before


def test_lines_naming_the_same_item_are_merged(client):
    widget = create_item(client, quantity=10)
    body = place(client, (widget, 2), (widget, 3))
    assert body["lines"] == [{"item_id": widget["id"], "name": widget["name"], "quantity": 5}]
    assert stock(client, widget) == 5


def test_short_stock_is_409_naming_every_short_item_and_takes_nothing(client, in_db):
    plenty, few, none = (create_item(client, quantity=n) for n in (10, 2, 0))
    response = order(client, (plenty, 1), (few, 3), (none, 1))
    problem = assert_problem(response, 409)
    assert sorted(problem["shortages"], key=lambda s: s["available"]) == [
        {"item_id": none["id"], "requested": 1, "available": 0},
        {"item_id": few["id"], "requested": 3, "available": 2},
    ]
    assert (stock(client, plenty), stock(client, few), stock(client, none)) == (10, 2, 0)
    assert in_db(lambda: count_rows(Order)) == 0


def test_an_unknown_item_is_422_naming_it_and_takes_nothing(client, in_db):
    widget = create_item(client, quantity=10)
    ghost = {"id": str(uuid.uuid4())}
    problem = assert_problem(order(client, (widget, 1), (ghost, 1)), 422, "lines")
    assert ghost["id"] in problem["detail"]
    assert stock(client, widget) == 10
    assert in_db(lambda: count_rows(Order)) == 0


def _line(item_id: str, **changes) -> dict:
    return {"item_id": item_id, "quantity": 1, **changes}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (lambda item: {}, "lines"),
        (lambda item: {"lines": []}, "lines"),
        (lambda item: {"lines": [_line("not-a-uuid")]}, "lines.0.item_id"),
        (lambda item: {"lines": [_line(item, quantity=0)]}, "lines.0.quantity"),
        (lambda item: {"lines": [_line(item, quantity=10_001)]}, "lines.0.quantity"),
        (lambda item: {"lines": [_line(item, quantity="1")]}, "lines.0.quantity"),
        (lambda item: {"lines": [_line(item, quantity=True)]}, "lines.0.quantity"),
        (lambda item: {"lines": [{"item_id": item}]}, "lines.0.quantity"),
        (lambda item: {"lines": [_line(item, price=3)]}, "lines.0.price"),
        (lambda item: {"lines": [_line(item)], "note": "x" * 1001}, "note"),
        (lambda item: {"lines": [_line(item)], "note": "a\x00b"}, "note"),
        (lambda item: {"lines": [_line(item)], "status": "paid"}, "status"),
        (lambda item: {"lines": _line(item)}, "lines"),
    ],
)
def test_a_bad_order_is_422_naming_the_field_and_takes_nothing(client, in_db, body, field):
    item = create_item(client, quantity=10)
    assert_problem(client.post("/api/orders", json=body(item["id"])), 422, field)
    assert stock(client, item) == 10
    assert in_db(lambda: count_rows(Order)) == 0


def test_more_than_100_lines_or_merged_units_over_the_bound_are_422(client):
    item = create_item(client, quantity=100_000)
    too_many = {"lines": [{"item_id": item["id"], "quantity": 1}] * 101}
    assert_problem(client.post("/api/orders", json=too_many), 422, "lines")
    assert_problem(order(client, (item, 6000), (item, 5000)), 422, "lines")
    assert stock(client, item) == 100_000


def test_an_idempotent_retry_replays_the_order_and_takes_stock_once(client, in_db):
    widget = create_item(client, quantity=10)
    first = order(client, (widget, 4), **{"Idempotency-Key": "order-1"})
    again = order(client, (widget, 4), **{"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_problem(order(client, (widget, 5), **{"Idempotency-Key": "order-1"}), 422)
    assert stock(client, widget) == 6
    assert in_db(lambda: count_rows(Order)) == 1


def test_a_short_order_releases_its_idempotency_key(client):
    widget = create_item(client, quantity=1)
    assert_problem(order(client, (widget, 2), **{"Idempotency-Key": "retry"}), 409)
    client.patch(f"/api/items/{widget['id']}", json={"quantity": 5})
    assert order(client, (widget, 2), **{"Idempotency-Key": "retry"}).status_code == 201


def test_members_see_their_own_orders_and_admins_see_all(client, as_user, make_user, admin):
    widget = create_item(client, quantity=100)
    mine = place(client, (widget, 1))
    other = as_user(make_user())
    theirs = place(other, (widget, 2))
    assert [o["id"] for o in client.get("/api/orders").json["data"]] == [mine["id"]]
    assert_problem(other.get(f"/api/orders/{mine['id']}"), 404)
    assert_problem(other.post(f"/api/orders/{mine['id']}/cancel"), 404)
    boss = as_user(admin)
    assert [o["id"] for o in boss.get("/api/orders").json["data"]] == [theirs["id"], mine["id"]]
    only = boss.get(f"/api/orders?user_id={mine['user_id']}").json["data"]
    assert [o["id"] for o in only] == [mine["id"]]
    # A member's user_id filter narrows their own list; it never widens it.
    assert other.get(f"/api/orders?user_id={mine['user_id']}").json["data"] == []
    assert boss.get(f"/api/orders/{mine['id']}").json["id"] == mine["id"]


def test_lists_are_keyset_pages_filtered_by_status(client, app):
    widget = create_item(client, quantity=100)
    made = [place(client, (widget, 1)) for _ in range(3)]
    client.post(f"/api/orders/{made[0]['id']}/cancel")
    page = client.get("/api/orders?limit=2")
    assert [o["id"] for o in page.json["data"]] == [made[2]["id"], made[1]["id"]]
    assert 'rel="next"' in page.headers["Link"]
    rest = client.get(f"/api/orders?limit=2&cursor={page.json['next_cursor']}").json
    assert [o["id"] for o in rest["data"]] == [made[0]["id"]]
    assert rest["next_cursor"] is None
    cancelled = client.get("/api/orders?status=cancelled").json["data"]
    assert [o["id"] for o in cancelled] == [made[0]["id"]]
    assert_problem(client.get("/api/orders?status=lost"), 400, "status")
    assert_problem(client.get("/api/orders?cursor=forged"), 400, "cursor")


def test_cancelling_returns_the_stock_and_cancelling_twice_is_409(client):
    widget, gear = create_item(client, quantity=10), create_item(client, quantity=3)
    made = place(client, (widget, 4), (gear, 3))
    response = client.post(f"/api/orders/{made['id']}/cancel")
    assert response.status_code == 200
    assert response.json["status"] == "cancelled"
    assert response.json["cancelled_at"] is not None
    assert response.headers["ETag"] == client.get(f"/api/orders/{made['id']}").headers["ETag"]
    assert (stock(client, widget), stock(client, gear)) == (10, 3)
    assert_problem(client.post(f"/api/orders/{made['id']}/cancel"), 409)
    assert (stock(client, widget), stock(client, gear)) == (10, 3)


def test_a_stale_if_match_on_cancel_is_412_and_changes_nothing(client):
    widget = create_item(client, quantity=10)
    made = place(client, (widget, 4))
    stale = client.get(f"/api/orders/{made['id']}").headers["ETag"]
    client.patch(f"/api/items/{widget['id']}", json={"name": "Renamed"})  # not the order
    current = client.get(f"/api/orders/{made['id']}").headers["ETag"]
    assert stale == current
    assert_problem(
        client.post(f"/api/orders/{made['id']}/cancel", headers={"If-Match": '"9-deadbeef"'}), 412
    )
    assert stock(client, widget) == 6
    ok = client.post(f"/api/orders/{made['id']}/cancel", headers={"If-Match": current})
    assert ok.status_code == 200


def test_a_paid_order_cannot_be_cancelled_and_an_admin_fulfils_it(pay, client, as_user, admin):
    widget = create_item(client, quantity=10)
    made = place(client, (widget, 2))
    boss = as_user(admin)
    assert_problem(boss.post(f"/api/orders/{made['id']}/fulfil"), 409)  # not paid yet
    pay(made["id"])
    paid = client.get(f"/api/orders/{made['id']}").json
    assert (paid["status"], paid["payment_reference"]) == ("paid", "pay_1")
    assert paid["paid_at"] is not None
    assert_problem(client.post(f"/api/orders/{made['id']}/cancel"), 409)
    assert_problem(client.post(f"/api/orders/{made['id']}/fulfil"), 403)
    fulfilled = boss.post(f"/api/orders/{made['id']}/fulfil")
    assert fulfilled.status_code == 200
    assert fulfilled.json["status"] == "fulfilled"
    assert fulfilled.json["fulfilled_at"] is not None
    assert_problem(boss.post(f"/api/orders/{made['id']}/fulfil"), 409)
    assert_problem(client.post(f"/api/orders/{made['id']}/cancel"), 409)
    assert stock(client, widget) == 8


def test_an_item_held_by_an_open_order_cannot_be_deleted(client, pay):
    widget = create_item(client, quantity=10)
    first, second = place(client, (widget, 1)), place(client, (widget, 1))
    problem = assert_problem(client.delete(f"/api/items/{widget['id']}"), 409)
    assert "2 open orders" in problem["detail"]
    client.post(f"/api/orders/{first['id']}/cancel")
    pay(second["id"])
    assert (
        "1 open order "
        in assert_problem(client.delete(f"/api/items/{widget['id']}"), 409)["detail"]
    )
    assert client.get(f"/api/items/{widget['id']}").status_code == 200


def test_an_item_only_closed_orders_name_can_be_deleted_and_they_keep_its_name(
    client, as_user, admin, app
):
    widget = create_item(client, quantity=10)
    made = place(client, (widget, 1))
    client.post(f"/api/orders/{made['id']}/cancel")
    assert client.delete(f"/api/items/{widget['id']}").status_code == 204
    line = client.get(f"/api/orders/{made['id']}").json["lines"][0]
    assert line == {"item_id": None, "name": widget["name"], "quantity": 1}


def test_a_put_may_set_stock_below_what_open_orders_took(client):
    widget = create_item(client, quantity=10)
    place(client, (widget, 8))
    replaced = client.put(
        f"/api/items/{widget['id']}", json={"name": "Widget", "description": None, "quantity": 1}
    )
    assert replaced.status_code == 200
    assert_problem(order(client, (widget, 2)), 409)
    assert stock(client, widget) == 1
