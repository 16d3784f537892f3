"""Orders in a real browser: an admin finds a paid order and fulfils it; a member's pages
pass axe-core."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support import eventually


@pytest.fixture(scope="module")
def console_settings() -> dict[str, str]:
    """Payments arrive unsigned from the `default` source, as in the API's order tests."""
    return {"WEBHOOK_UNSIGNED_SOURCES": "default"}


def _paid_order(console_server) -> str:
    """An order of a new member's, paid by a `payment_success` the worker processes."""
    member = console_server.make_user()
    item = console_server.api(console_server.admin).post(
        "/api/items", json={"name": "Hex bolt", "quantity": 10}
    )
    assert item.status_code == 201, item.text
    buyer = console_server.api(member)
    placed = buyer.post(
        "/api/orders", json={"lines": [{"item_id": item.json()["id"], "quantity": 3}]}
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    body = {"id": f"evt_{uuid.uuid4().hex}", "event": "payment_success", "order_id": order_id}
    sent = console_server.api().post(
        "/api/webhook", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert sent.status_code in (200, 201, 202), sent.text
    eventually(lambda: buyer.get(f"/api/orders/{order_id}").json()["status"] == "paid")
    return str(order_id)


@pytest.mark.screenshots
def test_an_admin_fulfils_a_paid_order(
    console_server, page, sign_in, check_accessibility, screenshot
):
    order_id = _paid_order(console_server)
    sign_in(page, console_server.admin.email, console_server.admin.password)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Orders").click()
    page.get_by_label("Status").select_option("paid")
    page.get_by_role("button", name="Filter").click()
    check_accessibility(page)
    screenshot(page, "console-orders")
    page.get_by_role("link", name=f"…{order_id[-12:]}").click()
    assert page.get_by_role("heading", level=1).inner_text() == f"Order {order_id}"
    check_accessibility(page)
    page.get_by_role("button", name="Mark fulfilled").click()
    assert page.get_by_role("status").inner_text() == "The order was marked fulfilled."
    assert "fulfilled" in page.locator("dl.current").inner_text()
    api = console_server.api(console_server.admin)
    assert api.get(f"/api/orders/{order_id}").json()["status"] == "fulfilled"
