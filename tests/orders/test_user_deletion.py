"""A person's orders when the person goes: deleting them (themselves or an admin) cancels
their pending orders and puts the stock back, in the deleting transaction; deactivating
them changes no order."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import select, update

from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.orders.models import Order, OrderStatus
from backoffice.users.models import User
from tests.auth.racing import all_at_once
from tests.items.factories import create_item


def place(client, *lines) -> dict:
    body = {"lines": [{"item_id": item["id"], "quantity": n} for item, n in lines]}
    response = client.post("/api/orders", json=body)
    assert response.status_code == 201, response.json
    return dict(response.json)


def stored_orders(ids) -> dict[str, tuple]:
    """{order id: (status, user_id, cancelled_at is set)} as the database holds them."""
    rows = db.session.scalars(select(Order).where(Order.id.in_([uuid.UUID(i) for i in ids])))
    return {str(o.id): (o.status, o.user_id, o.cancelled_at is not None) for o in rows}


def shelf(*items) -> list[int]:
    return [db.session.get(Item, uuid.UUID(item["id"])).quantity for item in items]


def mark_paid(order_id: str) -> None:
    """As a payment_success would leave it (the payment path has tests of its own)."""
    db.session.execute(
        update(Order).where(Order.id == uuid.UUID(order_id)).values(status=OrderStatus.PAID)
    )
    db.session.commit()


@pytest.mark.parametrize("who", ["themselves", "an admin"])
def test_deleting_a_user_cancels_their_pending_orders_and_returns_the_stock(
    who, client, member, as_user, admin, in_db
):
    gears, cogs = create_item(client, quantity=10), create_item(client, quantity=5)
    first = place(client, (gears, 3), (cogs, 2))
    second = place(client, (gears, 1))
    paid = place(client, (cogs, 1))
    in_db(lambda: mark_paid(paid["id"]))
    others = place(as_user(admin), (gears, 2))  # someone else's order is not touched
    assert in_db(lambda: shelf(gears, cogs)) == [4, 2]

    deleter = client if who == "themselves" else as_user(admin)
    assert deleter.delete(f"/api/users/{member.id}").status_code == 204

    assert in_db(lambda: db.session.get(User, member.id)) is None
    orders = in_db(lambda: stored_orders([first["id"], second["id"], paid["id"], others["id"]]))
    assert orders == {
        first["id"]: ("cancelled", None, True),
        second["id"]: ("cancelled", None, True),
        paid["id"]: ("paid", None, False),  # paid: a record of stock that moved, kept
        others["id"]: ("pending", admin.id, False),
    }
    # The units of the cancelled orders are back; the paid and the other person's are not.
    assert in_db(lambda: shelf(gears, cogs)) == [8, 4]


def test_deactivating_a_user_leaves_their_orders_as_they_are(client, member, as_user, admin, in_db):
    """Deactivation can be undone, and a payment may still arrive: the orders stay pending
    (an admin can cancel them)."""
    gears = create_item(client, quantity=10)
    pending = place(client, (gears, 3))
    changed = as_user(admin).patch(f"/api/users/{member.id}", json={"active": False})
    assert changed.status_code == 200
    assert in_db(lambda: stored_orders([pending["id"]])) == {
        pending["id"]: ("pending", member.id, False)
    }
    assert in_db(lambda: shelf(gears)) == [7]


def test_a_failed_deletion_cancels_nothing(as_user, admin, in_db):
    """The last active admin is not deleted (409): their orders stay pending, stock taken."""
    http = as_user(admin)
    gears = create_item(http, quantity=10)
    pending = place(http, (gears, 4))
    assert http.delete(f"/api/users/{admin.id}").status_code == 409
    assert in_db(lambda: stored_orders([pending["id"]])) == {
        pending["id"]: ("pending", admin.id, False)
    }
    assert in_db(lambda: shelf(gears)) == [6]


def test_orders_placed_while_their_owner_is_deleted_never_hold_stock(
    database_url, make_app, client, member, in_db
):
    """A person orders from three workers while deleting themselves: each order is either
    placed before the deletion (and then cancelled by it) or refused (401); none is left
    pending without an owner, and every unit is back on the shelf."""
    apps = [make_app(DATABASE_URL=database_url) for _ in range(3)]
    items = [create_item(client, quantity=1000) for _ in range(3)]
    auth = client.environ_base["HTTP_AUTHORIZATION"]

    def buy(n: int):
        http = apps[n % 3].test_client()
        lines = [{"item_id": items[(n + k) % 3]["id"], "quantity": 1 + k} for k in range(2)]
        return http.post("/api/orders", json={"lines": lines}, headers={"Authorization": auth})

    def leave():
        http = apps[0].test_client()
        return http.delete(f"/api/users/{member.id}", headers={"Authorization": auth})

    answers = all_at_once([*(lambda n=n: buy(n) for n in range(24)), leave])
    assert answers[-1].status_code == 204
    statuses = Counter(answer.status_code for answer in answers[:-1])
    assert set(statuses) <= {201, 401}, statuses
    placed = [answer.json["id"] for answer in answers[:-1] if answer.status_code == 201]
    assert {status for status, _, _ in in_db(lambda: stored_orders(placed)).values()} <= {
        "cancelled"
    }
    left_pending = in_db(
        lambda: db.session.scalars(select(Order).where(Order.status == OrderStatus.PENDING)).all()
    )
    assert left_pending == []
    assert in_db(lambda: shelf(*items)) == [1000, 1000, 1000]
