from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import url_for

from backoffice.conventions import etag_for, etag_header, expected_version, not_modified
from backoffice.guards import authenticated, current_principal
from backoffice.idempotency import idempotent
from backoffice.openapi import problem_responses
from backoffice.orders import service
from backoffice.orders.models import Order
from backoffice.orders.schemas import OrderIn, OrderList, OrderOut, OrderQuery
from backoffice.pagination import page_response

bp = APIBlueprint("orders", __name__, tag="Orders")

CREATE_RESPONSES: dict[int, str] = {
    **problem_responses(400, 401, 403, 413, 415, 422),
    409: "Not enough stock: `shortages` names each short item, what was asked and what is "
    "available; nothing was taken. Or the Idempotency-Key is in use by a request in flight.",
}
CHANGE_RESPONSES = problem_responses(400, 401, 403, 404, 409, 412)


def _answer(order: Order, status: int = 200) -> Any:
    return order, status, etag_header(etag_for(order.id, order.version))


@bp.post("/orders")
@bp.auth_required(authenticated, roles=["orders"])
@idempotent
@bp.input(OrderIn, arg_name="new_order")
@bp.output(OrderOut, status_code=201)
@bp.doc(responses=CREATE_RESPONSES)
def place_order(new_order: OrderIn) -> Any:
    """Order: take every line's units from stock, all or none"""
    lines = [(line.item_id, line.quantity) for line in new_order.lines]
    order = service.place_order(current_principal().user_id, lines, new_order.note)
    order_url = url_for(".get_order", order_id=order.id)
    return order, 201, {"Location": order_url, **etag_header(etag_for(order.id, order.version))}


@bp.get("/orders")
@bp.auth_required(authenticated, roles=["orders"])
@bp.input(OrderQuery, location="query", arg_name="query")
@bp.output(OrderList)
@bp.doc(responses=problem_responses(400, 401, 403))
def list_orders(query: OrderQuery) -> Any:
    """Your orders (everyone's for an admin), newest first; filter by status, user_id"""
    caller = current_principal()
    return page_response(
        service.list_orders(
            caller.user_id, caller.is_admin, query.limit, query.cursor, query.status, query.user_id
        )
    )


@bp.get("/orders/<uuid:order_id>")
@bp.auth_required(authenticated, roles=["orders"])
@bp.output(OrderOut)
@bp.doc(responses=problem_responses(400, 401, 403, 404, status_304=True))
def get_order(order_id: uuid.UUID) -> Any:
    """One of your orders (anyone's for an admin)"""
    caller = current_principal()
    order = service.visible_order(order_id, caller.user_id, caller.is_admin)
    return not_modified(etag_for(order.id, order.version)) or _answer(order)


@bp.post("/orders/<uuid:order_id>/cancel")
@bp.auth_required(authenticated, roles=["orders"])
@bp.output(OrderOut)
@bp.doc(responses=CHANGE_RESPONSES)
def cancel_order(order_id: uuid.UUID) -> Any:
    """Cancel a pending order: its units go back to stock (409 once paid, or twice)"""
    caller = current_principal()
    expected = expected_version(order_id)
    return _answer(service.cancel_order(order_id, caller.user_id, caller.is_admin, expected))


@bp.post("/orders/<uuid:order_id>/fulfil")
@bp.auth_required(authenticated, roles=["admin"])
@bp.output(OrderOut)
@bp.doc(responses=CHANGE_RESPONSES)
def fulfil_order(order_id: uuid.UUID) -> Any:
    """Mark a paid order fulfilled (admins; 409 unless paid)"""
    return _answer(service.fulfil_order(order_id, expected_version(order_id)))
