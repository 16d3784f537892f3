"""Orders in the console: each person's own (an admin's: everyone's, by customer), lines
and history, cancel while pending (the page says why not once paid) and fulfil (admins)."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable

import pytest
from markupsafe import escape

from backoffice import work
from backoffice.extensions import db
from backoffice.items import service as items
from backoffice.orders import service as orders
from backoffice.orders.models import Order
from tests.support import Account

XSS = '<script>alert("order")</script>'


@pytest.fixture
def place(app, in_db) -> Callable[..., uuid.UUID]:
    """Place an order for `account` of `units` of a new item named `name`; its id."""

    def placed(account: Account, units: int = 2, name: str = "Hex bolt") -> uuid.UUID:
        def run() -> uuid.UUID:
            item = items.create_item(name, None, 50)
            return orders.place_order(account.id, [(item.id, units)]).id

        return in_db(run)

    return placed


@pytest.fixture
def pay(make_app, database_url, tmp_path) -> Callable[[uuid.UUID], None]:
    """Mark an order paid the only way there is: a `payment_success` through the gateway,
    processed here as a worker would (a broker no worker reads)."""
    gateway = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_UNSIGNED_SOURCES="default",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'payments.db'}",
    )

    def paid(order_id: uuid.UUID) -> None:
        body = {"id": f"evt_{uuid.uuid4().hex}", "event": "payment_success"}
        answer = gateway.test_client().post(
            "/api/webhook", json={**body, "order_id": str(order_id), "payment_id": "pay_1"}
        )
        assert answer.status_code == 201, answer.json
        with gateway.app_context():
            assert work.process("webhooks", uuid.UUID(answer.json["id"])) is False

    return paid


def _order(in_db, order_id: uuid.UUID) -> tuple[str, int]:
    """The order's status and the stock left of its first line's item."""

    def run() -> tuple[str, int]:
        order = db.session.get(Order, order_id)
        stock = items.get_item(order.lines[0].item_id).quantity
        return order.status, stock

    return in_db(run)


def test_a_member_sees_only_their_own_orders_with_their_lines(console_as, member, make_user, place):
    mine = place(member, 3, XSS)
    theirs = place(make_user(), 1, "Someone else's washer")
    page = console_as(member).get("/console/orders")
    assert page.status_code == 200
    assert str(mine) in page.text
    assert str(theirs) not in page.text
    assert XSS not in page.text
    assert f"{escape(XSS)} \u00d7 3" in page.text
    assert "Customer email" not in page.text  # the customer filter is for admins


def test_another_persons_order_is_404_for_a_member(console_as, member, make_user, place):
    theirs = place(make_user())
    console = console_as(member)
    assert console.get(f"/console/orders/{theirs}").status_code == 404
    assert console.post(f"/console/orders/{theirs}/cancel").status_code == 404


def test_an_admin_filters_by_customer_email_and_status(console_as, admin, member, make_user, place):
    ada = make_user(email="ada@example.com")
    hers, other = place(ada), place(member)
    console = console_as(admin)
    page = console.get("/console/orders", query_string={"customer": "ADA@example.com"})
    assert str(hers) in page.text
    assert str(other) not in page.text
    assert "ada@example.com" in page.text
    paid_only = console.get("/console/orders", query_string={"status": "paid"})
    assert str(hers) not in paid_only.text
    assert "No orders." in paid_only.text
    nobody = console.get("/console/orders", query_string={"customer": "nobody@example.com"})
    assert "No user has that email" in nobody.text
    assert str(other) not in nobody.text


def test_a_bad_status_filter_is_400_naming_it(console_as, member):
    page = console_as(member).get("/console/orders", query_string={"status": "lost"})
    assert page.status_code == 400
    assert "status:" in page.text


def test_the_list_is_keyset_pages(console_as, member, place):
    made = [place(member, name=f"Part {n}") for n in range(3)]
    console = console_as(member)
    first = console.get("/console/orders", query_string={"limit": "2"})
    assert str(made[2]) in first.text
    assert str(made[0]) not in first.text
    link = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert link is not None
    second = console.get(html.unescape(link.group(1)))
    assert str(made[0]) in second.text
    assert 'rel="next"' not in second.text


def test_the_owner_cancels_a_pending_order_and_the_stock_comes_back(
    console_as, member, place, in_db
):
    order_id = place(member, 4)
    console = console_as(member)
    page = console.get(f"/console/orders/{order_id}")
    assert "Hex bolt" in page.text
    assert "Cancel this order" in page.text
    assert "Mark fulfilled" not in page.text
    answer = console.post(f"/console/orders/{order_id}/cancel")
    assert answer.status_code == 303
    assert _order(in_db, order_id) == ("cancelled", 50)
    shown = console.get(answer.headers["Location"])
    assert "The order was cancelled" in shown.text
    assert "Cancel this order" not in shown.text


def test_a_paid_order_cannot_be_cancelled_and_the_page_says_why(
    console_as, member, place, pay, in_db
):
    order_id = place(member, 4)
    console = console_as(member)
    console.get(f"/console/orders/{order_id}")  # the page, while still pending
    pay(order_id)
    answer = console.post(f"/console/orders/{order_id}/cancel")
    assert answer.status_code == 409
    assert "Only a pending order can be cancelled; this one is paid." in answer.text
    assert _order(in_db, order_id) == ("paid", 46)


def test_an_admin_fulfils_a_paid_order_and_its_history_shows_when(
    console_as, admin, member, place, pay, in_db
):
    order_id = place(member)
    console = console_as(admin)
    refused = console.post(f"/console/orders/{order_id}/fulfil")
    assert refused.status_code == 409
    assert "Only a paid order can be fulfilled; this one is pending." in refused.text
    pay(order_id)
    assert "Mark fulfilled" in console.get(f"/console/orders/{order_id}").text
    answer = console.post(f"/console/orders/{order_id}/fulfil")
    assert answer.status_code == 303
    assert _order(in_db, order_id) == ("fulfilled", 48)
    page = console.get(answer.headers["Location"])
    assert "The order was marked fulfilled." in page.text
    assert page.text.count("<time datetime=") == 3  # placed, paid, fulfilled
    assert "pay_1" in page.text


def test_a_member_cannot_fulfil_even_their_own_paid_order(console_as, member, place, pay, in_db):
    order_id = place(member)
    pay(order_id)
    console = console_as(member)
    assert "Mark fulfilled" not in console.get(f"/console/orders/{order_id}").text
    assert console.post(f"/console/orders/{order_id}/fulfil").status_code == 404
    assert _order(in_db, order_id) == ("paid", 48)
