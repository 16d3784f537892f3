"""A Hypothesis state machine over orders: create, cancel, pay, fulfil and item edits.

Stock is conserved (the shelf the model predicts is the shelf the API shows: what
orders took is gone, what cancels returned is back, what edits set is there) and an
order's status only moves along `pending → paid → fulfilled` or `pending → cancelled`.
"""

from __future__ import annotations

import uuid
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from backoffice import work
from tests.items.factories import create_item

NEXT = {
    "pending": {"paid", "cancelled"},
    "paid": {"fulfilled"},
    "fulfilled": set(),
    "cancelled": set(),
}


def test_stock_is_conserved_and_orders_only_move_forward(
    client, as_user, admin, make_app, database_url, tmp_path
):
    gateway = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_UNSIGNED_SOURCES="default",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'unread.db'}",
    )
    boss = as_user(admin)

    class Orders(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.shelf = {create_item(client, quantity=12)["id"]: 12 for _ in range(3)}
            self.status: dict[str, str] = {}
            self.lines: dict[str, Counter[str]] = {}

        def _moved(self, order_id: str, to: str) -> None:
            assert to in NEXT[self.status[order_id]] | {self.status[order_id]}
            self.status[order_id] = to

        @rule(data=st.data())
        def place(self, data: st.DataObject) -> None:
            basket = data.draw(
                st.lists(
                    st.tuples(st.sampled_from(sorted(self.shelf)), st.integers(1, 6)),
                    min_size=1,
                    max_size=4,
                )
            )
            wanted: Counter[str] = Counter()
            for item_id, quantity in basket:
                wanted[item_id] += quantity
            lines = [{"item_id": i, "quantity": q} for i, q in basket]
            response = client.post("/api/orders", json={"lines": lines})
            if all(wanted[i] <= self.shelf[i] for i in wanted):
                assert response.status_code == 201, response.json
                for item_id, quantity in wanted.items():
                    self.shelf[item_id] -= quantity
                self.status[response.json["id"]] = "pending"
                self.lines[response.json["id"]] = wanted
            else:
                assert response.status_code == 409, response.json
                short = {s["item_id"] for s in response.json["shortages"]}
                assert short == {i for i in wanted if wanted[i] > self.shelf[i]}

        @precondition(lambda self: self.status)
        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            order_id = data.draw(st.sampled_from(sorted(self.status)))
            response = client.post(f"/api/orders/{order_id}/cancel")
            if self.status[order_id] == "pending":
                assert response.status_code == 200
                for item_id, quantity in self.lines[order_id].items():
                    self.shelf[item_id] += quantity
                self._moved(order_id, "cancelled")
            else:
                assert response.status_code == 409
            assert response.json["status"] == self.status[order_id] or response.status_code == 409

        @precondition(lambda self: self.status)
        @rule(data=st.data())
        def pay(self, data: st.DataObject) -> None:
            order_id = data.draw(st.sampled_from(sorted(self.status)))
            event = gateway.test_client().post(
                "/api/webhook",
                json={"id": uuid.uuid4().hex, "event": "payment_success", "order_id": order_id},
            )
            with gateway.app_context():
                work.process("webhooks", uuid.UUID(event.json["id"]))
            if self.status[order_id] == "pending":
                self._moved(order_id, "paid")

        @precondition(lambda self: self.status)
        @rule(data=st.data())
        def fulfil(self, data: st.DataObject) -> None:
            order_id = data.draw(st.sampled_from(sorted(self.status)))
            response = boss.post(f"/api/orders/{order_id}/fulfil")
            if self.status[order_id] == "paid":
                assert response.status_code == 200
                self._moved(order_id, "fulfilled")
            else:
                assert response.status_code == 409

        @rule(data=st.data(), quantity=st.integers(0, 15))
        def edit_stock(self, data: st.DataObject, quantity: int) -> None:
            item_id = data.draw(st.sampled_from(sorted(self.shelf)))
            response = client.patch(f"/api/items/{item_id}", json={"quantity": quantity})
            assert response.status_code == 200
            self.shelf[item_id] = quantity

        @invariant()
        def the_shelf_is_what_the_model_says(self) -> None:
            for item_id, quantity in self.shelf.items():
                assert client.get(f"/api/items/{item_id}").json["quantity"] == quantity

        @invariant()
        def every_order_is_where_the_model_says(self) -> None:
            for order_id, status in self.status.items():
                assert client.get(f"/api/orders/{order_id}").json["status"] == status

    run_state_machine_as_test(
        Orders,
        settings=settings(
            max_examples=8,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
