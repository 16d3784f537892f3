"""Orders: filter by status and (admins) customer; one order's lines and history; cancel
(its owner or an admin) and fulfil (admins). The order rules are `orders.service`'s."""

from __future__ import annotations

import uuid
from typing import Any

from flask import render_template, request
from pydantic import ValidationError

from backoffice.console.pages import (
    admin_only,
    audit,
    back_to,
    bp,
    cursor_arg,
    field_errors,
    operator,
    page_limit,
)
from backoffice.errors import Conflict, StaleVersion
from backoffice.orders import service as orders
from backoffice.orders.schemas import OrderQuery
from backoffice.pagination import Page
from backoffice.users import service as users

MESSAGES = {
    "cancelled": "The order was cancelled and its units went back to stock.",
    "fulfilled": "The order was marked fulfilled.",
}
#: Why a change found the order moved under it (a payment landing meanwhile, say).
RACED = "The order changed while you acted on it: nothing was done. Its current state is below."


def _orders_page(query: OrderQuery, email: str) -> tuple[Page[Any], bool]:
    """The page of orders asked for, and whether the customer typed (admins) is unknown:
    then no order is theirs, and the page says so rather than showing everyone's."""
    if not (email and operator().is_admin):
        return orders.list_orders(operator(), query.limit, query.cursor, query.status), False
    customer = users.find_by_email(email)
    if customer is None:
        return Page([], None), True
    page = orders.list_orders(operator(), query.limit, query.cursor, query.status, customer.id)
    return page, False


@bp.get("/orders")
def order_list() -> Any:
    status, email = request.args.get("status") or None, request.args.get("customer", "").strip()
    filters = {"status": status, "cursor": cursor_arg(), "limit": page_limit()}
    try:
        query = OrderQuery.model_validate(filters)
    except ValidationError as error:
        html = render_template(
            "console/orders.html",
            page=None,
            filters={},
            statuses=orders.STATUSES,
            errors=field_errors(error),
        )
        return html, 400
    page, unknown = _orders_page(query, email[:320])
    return render_template(
        "console/orders.html",
        page=page,
        filters={"status": status, "customer": email[:320] or None},
        unknown_customer=unknown,
        statuses=orders.STATUSES,
        emails=users.emails_of([o.user_id for o in page.data if o.user_id]),
        message=MESSAGES.get(request.args.get("done", "")),
    )


def _order_page(order_id: uuid.UUID, refusal: str | None = None, status: int = 200) -> Any:
    order = orders.visible_order(order_id, operator())
    email = users.emails_of([order.user_id]).get(order.user_id) if order.user_id else None
    page = render_template(
        "console/order.html",
        order=order,
        customer=email,
        refusal=refusal,
        message=MESSAGES.get(request.args.get("done", "")),
    )
    return page, status


@bp.get("/orders/<uuid:order_id>")
def order_detail(order_id: uuid.UUID) -> Any:
    return _order_page(order_id)


@bp.post("/orders/<uuid:order_id>/cancel")
def order_cancel(order_id: uuid.UUID) -> Any:
    """Only a pending order can be cancelled: a paid one is refused, and the page says why."""
    try:
        orders.cancel_order(order_id, operator())
    except Conflict as error:
        return _order_page(order_id, error.detail, 409)
    except StaleVersion:
        return _order_page(order_id, RACED, 409)
    audit("order.cancel", order=str(order_id))
    return back_to("console.order_detail", "cancelled", order_id=order_id)


@bp.post("/orders/<uuid:order_id>/fulfil")
@admin_only
def order_fulfil(order_id: uuid.UUID) -> Any:
    try:
        orders.fulfil_order(order_id)
    except Conflict as error:
        return _order_page(order_id, error.detail, 409)
    except StaleVersion:
        return _order_page(order_id, RACED, 409)
    audit("order.fulfil", order=str(order_id))
    return back_to("console.order_detail", "fulfilled", order_id=order_id)
