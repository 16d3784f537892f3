"""Orders, in the shape of items (`backoffice.items.routes`): a collection, a resource, and
one view per action on an order (cancel, fulfil)."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask.views import MethodView
from flask import url_for

from backoffice.conventions import etag_for, etag_header, expected_version, not_modified
from backoffice.errors import PROBLEM_MIMETYPE
from backoffice.guards import authenticated, current_principal
from backoffice.idempotency import idempotent
from backoffice.openapi import described_response, problem_responses
from backoffice.orders import service
from backoffice.orders.models import Order
from backoffice.orders.schemas import OrderIn, OrderList, OrderOut, OrderQuery, ShortageProblem
from backoffice.output import Blueprint

bp = Blueprint("orders", __name__, tag="Orders")

CREATE_RESPONSES: dict[int, Any] = {
    **problem_responses(400, 401, 403, 413, 415, 422),
    409: described_response(
        "Not enough stock: `shortages` names each short item, what was asked and what is "
        "available; nothing was taken. Or the Idempotency-Key is in use by a request in "
        "flight (no `shortages`).",
        ShortageProblem,
        PROBLEM_MIMETYPE,
    ),
}
CHANGE_RESPONSES = problem_responses(400, 401, 403, 404, 409, 412)


def _versioned(order: Order) -> dict[str, str]:
    return etag_header(etag_for(order.id, order.version))


class OrderCollection(MethodView):
    """`{prefix}/orders`: your orders (everyone's for an admin)."""

    decorators = [bp.auth_required(authenticated, roles=["orders"])]

    @bp.input(OrderQuery, location="query", arg_name="query")
    @bp.output(OrderList)
    @bp.doc(operation_id="list_orders", responses=problem_responses(400, 401, 403))
    def get(self, query: OrderQuery) -> Any:
        """Your orders (everyone's for an admin), newest first; filter by status, user_id"""
        viewer = current_principal()
        return service.list_orders(viewer, query.limit, query.cursor, query.status, query.user_id)

    @idempotent
    @bp.input(OrderIn, arg_name="new_order")
    @bp.output(OrderOut, status_code=201)
    @bp.doc(operation_id="place_order", responses=CREATE_RESPONSES)
    def post(self, new_order: OrderIn) -> Any:
        """Order: take every line's units from stock, all or none"""
        lines = [(line.item_id, line.quantity) for line in new_order.lines]
        order = service.place_order(current_principal().user_id, lines, new_order.note)
        location = {"Location": url_for(".order", order_id=order.id)}
        return order, 201, {**location, **_versioned(order)}


class OrderResource(MethodView):
    """`{prefix}/orders/<id>`: one of your orders (anyone's for an admin)."""

    decorators = [bp.auth_required(authenticated, roles=["orders"])]

    @bp.output(OrderOut)
    @bp.doc(
        operation_id="get_order", responses=problem_responses(400, 401, 403, 404, status_304=True)
    )
    def get(self, order_id: uuid.UUID) -> Any:
        """One of your orders (anyone's for an admin)"""
        order = service.visible_order(order_id, current_principal())
        return not_modified(etag_for(order.id, order.version)) or (order, _versioned(order))


class OrderCancellation(MethodView):
    """`{prefix}/orders/<id>/cancel`."""

    decorators = [bp.auth_required(authenticated, roles=["orders"])]

    @bp.output(OrderOut)
    @bp.doc(operation_id="cancel_order", responses=CHANGE_RESPONSES)
    def post(self, order_id: uuid.UUID) -> Any:
        """Cancel a pending order: its units go back to stock (409 once paid, or twice)"""
        expected = expected_version(order_id)
        order = service.cancel_order(order_id, current_principal(), expected)
        return order, _versioned(order)


class OrderFulfilment(MethodView):
    """`{prefix}/orders/<id>/fulfil`: admins ship a paid order."""

    decorators = [bp.auth_required(authenticated, roles=["admin"])]

    @bp.output(OrderOut)
    @bp.doc(operation_id="fulfil_order", responses=CHANGE_RESPONSES)
    def post(self, order_id: uuid.UUID) -> Any:
        """Mark a paid order fulfilled (admins; 409 unless paid)"""
        order = service.fulfil_order(order_id, expected_version(order_id))
        return order, _versioned(order)


bp.add_url_rule("/orders", view_func=OrderCollection.as_view("orders"))
bp.add_url_rule("/orders/<uuid:order_id>", view_func=OrderResource.as_view("order"))
bp.add_url_rule(
    "/orders/<uuid:order_id>/cancel", view_func=OrderCancellation.as_view("cancellation")
)
bp.add_url_rule("/orders/<uuid:order_id>/fulfil", view_func=OrderFulfilment.as_view("fulfilment"))
