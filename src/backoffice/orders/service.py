"""Order rules: stock taken atomically through items' service, paid by a webhook event.

Members see and cancel their own orders; admins see, cancel and fulfil everyone's.
Another member's order is simply not there (404).
"""

from __future__ import annotations

import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Select, Table, and_, case, func, insert, select
from sqlalchemy.exc import IntegrityError

from backoffice import activity, work
from backoffice.database import utcnow
from backoffice.errors import Conflict, InvalidToken, NotFound, ValidationFailed
from backoffice.extensions import db
from backoffice.items import service as items
from backoffice.orders.models import Order, OrderLine, OrderStatus
from backoffice.orders.schemas import MAX_UNITS
from backoffice.ownership import Viewer, visible_to
from backoffice.pagination import Page, paginate
from backoffice.transactions import commit
from backoffice.users import service as users
from backoffice.versioning import commit_versioned, require_version

ORDERS = cast(Table, Order.__table__)
LINES = cast(Table, OrderLine.__table__)
#: A new order and its lines: Core inserts, the order returned whole (its id, timestamps
#: and version are the columns' defaults). The ORM's unit of work, for two new rows, was
#: half of an order's CPU (docs/benchmarks.md).
INSERT_ORDER = insert(ORDERS).returning(*ORDERS.columns)
INSERT_LINES = insert(LINES)
#: Every status an order passes through, for the forms that filter by one.
STATUSES: tuple[str, ...] = tuple(OrderStatus)
#: Orders that still hold their items: stock taken and not given back or shipped.
OPEN = (OrderStatus.PENDING, OrderStatus.PAID)


def merge_lines(lines: Iterable[tuple[uuid.UUID, int]]) -> dict[uuid.UUID, int]:
    """Units per item, lines naming the same item added up (at most MAX_UNITS each)."""
    units: Counter[uuid.UUID] = Counter()
    for item_id, quantity in lines:
        units[item_id] += quantity
    over = [item_id for item_id, total in units.items() if total > MAX_UNITS]
    if over:
        raise ValidationFailed(
            f"At most {MAX_UNITS} units of one item per order (lines of the same item are "
            "added up).",
            errors=[{"field": "lines", "message": f"more than {MAX_UNITS} of {i}"} for i in over],
        )
    return dict(units)


def place_order(
    user_id: uuid.UUID, lines: Sequence[tuple[uuid.UUID, int]], note: str | None = None
) -> Order:
    """Take the stock of every line and record the order, in one transaction.

    The person is held first (`users.hold_user`): deleted meanwhile, they get 401 and
    nothing is taken; their deletion, waiting, then sees this order and cancels it.
    """
    units = merge_lines(lines)
    if not users.hold_user(user_id):
        raise _OwnerGone()
    names = items.take_stock(units)
    values = {
        "user_id": user_id,
        "status": OrderStatus.PENDING,
        "note": note,
        "total_quantity": sum(units.values()),
    }
    try:
        row = db.session.execute(INSERT_ORDER, values).one()
        placed = [
            {"order_id": row.id, "line_no": n, "item_id": i, "name": names[i], "quantity": q}
            for n, (i, q) in enumerate(units.items(), start=1)
        ]
        db.session.execute(INSERT_LINES, placed)
        commit()
    except IntegrityError:
        # The only reference that can break: the person, deleted between `hold_user` and
        # this insert on SQLite, where that read holds nothing (the items are locked).
        db.session.rollback()
        raise _OwnerGone() from None
    # What was stored, as the model (not in the session: nothing is left to flush).
    return Order(**row._asdict(), lines=[OrderLine(**line) for line in placed])


class _OwnerGone(InvalidToken):
    def __init__(self) -> None:
        super().__init__("Your account was deleted while this order was placed: nothing was taken.")


def visible_order(order_id: uuid.UUID, viewer: Viewer) -> Order:
    return visible_to(Order, "order", order_id, viewer)


def list_orders(
    viewer: Viewer,
    limit: int,
    cursor: str | None,
    status: OrderStatus | None = None,
    user_id: uuid.UUID | None = None,
) -> Page[Order]:
    """A page of orders, newest first: the viewer's own, or anyone's for an admin."""
    query: Select[Any] = select(Order)
    if not viewer.is_admin:
        query = query.where(Order.user_id == viewer.user_id)
    if user_id is not None:
        query = query.where(Order.user_id == user_id)
    if status is not None:
        query = query.where(Order.status == status)
    return paginate("orders", query, Order.id, limit, cursor, fetch=_orders_with_lines)


def _orders_with_lines(statement: Select[Any], parameters: dict[str, Any]) -> Sequence[Order]:
    """A page's orders through the session, so each carries its lines."""
    return db.session.scalars(statement, parameters).all()


def cancel_order(order_id: uuid.UUID, viewer: Viewer, expected_version: int | None = None) -> Order:
    """Cancel a pending order and put its units back, in one transaction.

    Only a pending order can be cancelled: a paid, fulfilled or already cancelled one is a
    conflict (cancelling twice is 409, not a silent 200).
    """
    order = visible_order(order_id, viewer)
    require_version("order", order_id, order.version, expected_version)
    if order.status != OrderStatus.PENDING:
        raise Conflict(f"Only a pending order can be cancelled; this one is {order.status}.")
    items.return_stock(
        {line.item_id: line.quantity for line in order.lines if line.item_id is not None}
    )
    order.status, order.cancelled_at = OrderStatus.CANCELLED, utcnow()
    commit_versioned("order", order_id)
    return order


def fulfil_order(order_id: uuid.UUID, expected_version: int | None = None) -> Order:
    """Ship a paid order (admins)."""
    order = db.session.get(Order, order_id)
    if order is None:
        raise NotFound("order", order_id)
    require_version("order", order_id, order.version, expected_version)
    if order.status != OrderStatus.PAID:
        raise Conflict(f"Only a paid order can be fulfilled; this one is {order.status}.")
    order.status, order.fulfilled_at = OrderStatus.FULFILLED, utcnow()
    commit_versioned("order", order_id)
    return order


def cancel_orders_of(user_id: uuid.UUID) -> None:
    """A person is being deleted (users tell, in the deleting transaction): their pending
    orders are cancelled and every unit goes back to stock, committed with the deletion.
    Paid and fulfilled orders stay, records of stock that moved (their user_id becomes
    null). An order that is paid or cancelled meanwhile makes its versioned UPDATE miss
    (StaleDataError, at the caller's flush): the deletion is then refused, never half done.
    """
    pending = db.session.scalars(
        select(Order).where(Order.user_id == user_id, Order.status == OrderStatus.PENDING)
    ).all()
    units: Counter[uuid.UUID] = Counter()
    for order in pending:
        for line in order.lines:
            if line.item_id is not None:
                units[line.item_id] += line.quantity
    items.return_stock(units)  # one call: every item in id order, as take_stock locks them
    now = utcnow()
    for order in pending:
        order.status, order.cancelled_at = OrderStatus.CANCELLED, now


def open_orders_holding(item_id: uuid.UUID) -> str | None:
    """Why an item cannot go: the open orders that took it (items' delete asks)."""
    count = db.session.scalar(
        select(func.count(func.distinct(Order.id)))
        .join(OrderLine)
        .where(OrderLine.item_id == item_id, Order.status.in_(OPEN))
    )
    if not count:
        return None
    return f"{count} open order{'s' if count != 1 else ''} (pending or paid) hold it"


# --- payments, from the webhook gateway ----------------------------------------------


def _field(payload: dict[str, Any], name: str) -> Any:
    """`name` at the top (the tutorial's shape) or under `data` (Standard Webhooks')."""
    data = payload.get("data")
    if isinstance(data, dict) and name in data:
        return data[name]
    return payload.get(name)


#: What the order keeps of the partner's `payment_id` (its column's size).
MAX_PAYMENT_ID = 255
#: How a payment_id of another JSON type is named in the event's `last_error`.
_JSON_TYPES = {dict: "an object", list: "an array", bool: "a boolean", int: "a number"}


def _payment_reference(payload: dict[str, Any]) -> str | None:
    """The partner's `payment_id` as the order keeps it: none, or 1-255 characters of text
    without control characters. Anything else is refused (`work.Rejected`), never cut to
    fit nor stored as Python's rendering of an object: the reference must be the one the
    partner sent, or an admin matching a refund to it would be misled."""
    reference = _field(payload, "payment_id")
    if reference is None:
        return None
    if not isinstance(reference, str):
        kind = _JSON_TYPES.get(type(reference), "a number")
        raise work.Rejected(f"payment_success has a payment_id that is {kind}, not a string")
    if not 1 <= len(reference) <= MAX_PAYMENT_ID:
        raise work.Rejected(
            f"payment_success has a payment_id of {len(reference)} characters "
            f"(1 to {MAX_PAYMENT_ID})"
        )
    # The payload keeps any text; a text column cannot hold U+0000, nor should a reference
    # shown to people hold any other control character.
    control = next((char for char in reference if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        raise work.Rejected(
            f"payment_success has a payment_id holding a control character (U+{ord(control):04X})"
        )
    return reference


def handle_payment(payload: dict[str, Any], attempt: work.Attempt) -> None:
    """`payment_success`: mark the order paid, once.

    A redelivery, a replay or a second payment of a paid (or fulfilled) order changes
    nothing. An event naming no order, an unknown one or a cancelled one can never
    succeed: it is rejected (the event ends `failed` with the reason, for an admin to
    see), not retried; so can one whose `payment_id` the order cannot keep as sent. The
    order's change commits with the event's outcome.
    """
    raw = _field(payload, "order_id")
    try:
        order_id = uuid.UUID(str(raw))
    except ValueError:
        raise work.Rejected(f"payment_success names no valid order_id ({raw!r})") from None
    reference = _payment_reference(payload)
    order = db.session.get(Order, order_id, with_for_update=True)
    if order is None:
        raise work.Rejected(f"payment_success for order {order_id}, which does not exist")
    if order.status in (OrderStatus.PAID, OrderStatus.FULFILLED):
        return
    if order.status == OrderStatus.CANCELLED:
        raise work.Rejected(
            f"payment_success for order {order_id}, which was cancelled: refund the payment "
            "or reinstate the order by hand"
        )
    order.status, order.paid_at = OrderStatus.PAID, utcnow()
    order.payment_reference = reference
    order.payment_event_id = attempt.row_id
    commit()


# --- the overview's figures (`backoffice.activity`) -------------------------------------

#: What happens to orders, each with the column saying when: (label, column).
TRANSITIONS = (
    ("placed", ORDERS.c.created_at),
    (OrderStatus.PAID.value, ORDERS.c.paid_at),
    (OrderStatus.FULFILLED.value, ORDERS.c.fulfilled_at),
    (OrderStatus.CANCELLED.value, ORDERS.c.cancelled_at),
)


def count_transitions(start: datetime, end: datetime) -> dict[str, float]:
    """Orders placed, paid, fulfilled and cancelled in `[start, end)`. One pass over the
    orders table (no index on these times: the worker's tally runs it once an hour counted,
    never a page); index the four columns if orders grow to millions."""
    sums = [
        func.coalesce(func.sum(case((and_(when >= start, when < end), 1), else_=0)), 0)
        for _, when in TRANSITIONS
    ]
    found = db.session.execute(select(*sums)).one()
    return {label: float(n) for (label, _), n in zip(TRANSITIONS, found, strict=True) if n}


#: Tallied each hour by the worker (`activity.Tally`), a week of it kept for the chart.
ORDER_TRANSITIONS = activity.Tally("order_transitions", count_transitions, hours=7 * 24)


def transitions_per_day(days: int = 7) -> tuple[list[date], list[str], list[dict[str, float]]]:
    """Orders placed, paid, fulfilled, cancelled per day (UTC), the last `days` days, as
    last tallied: (days, labels, counts per day)."""
    hourly = activity.hourly(ORDER_TRANSITIONS.series, (days - 1) * 24 + utcnow().hour + 1)
    by_day: dict[date, dict[str, float]] = {}
    for hour, counts in zip(hourly.hours, hourly.values, strict=True):
        day = by_day.setdefault(hour.date(), {})
        for label, n in counts.items():
            day[label] = day.get(label, 0.0) + n
    labels = [label for label, _ in TRANSITIONS]
    return list(by_day), labels, list(by_day.values())
