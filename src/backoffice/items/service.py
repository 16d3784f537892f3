"""Inventory rules: plain values in, plain values (or APIError, StaleVersion) out."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from flask import Flask, current_app
from sqlalchemy import Row, Select, Table, bindparam, func, insert, select, update

from backoffice import transactions
from backoffice.database import utcnow
from backoffice.errors import Conflict, NotFound, ValidationFailed
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.pagination import Page, paginate
from backoffice.prepared import prepared
from backoffice.readonly import read_row
from backoffice.versioning import commit_versioned, require_version

#: The table behind `Item`, for the Core statements of the hot paths.
ITEMS = cast(Table, Item.__table__)
#: What a read returns: the item's columns as a row (`row.name`, `row.version`, ...).
ITEM_COLUMNS = prepared(select(*ITEMS.columns))
#: Built once: the hottest query in the service, by primary key.
ITEM_BY_ID = prepared(ITEM_COLUMNS.where(ITEMS.c.id == bindparam("item_id")))
#: A new item, returned whole (its id and timestamps are the columns' defaults).
INSERT_ITEM = prepared(insert(ITEMS).returning(*ITEMS.columns))
#: What a report shows of an item, in this order.
REPORT_COLUMNS: Select[Any] = select(
    ITEMS.c.id,
    ITEMS.c.name,
    ITEMS.c.description,
    ITEMS.c.quantity,
    ITEMS.c.created_at,
    ITEMS.c.updated_at,
)


def get_item(item_id: uuid.UUID) -> Row[Any]:
    """The item as it is now, read without a session (see `backoffice.readonly`)."""
    row = read_row(ITEM_BY_ID, {"item_id": item_id})
    if row is None:
        raise NotFound("item", item_id)
    return row


def list_items(limit: int, cursor: str | None, q: str | None = None) -> Page[Row[Any]]:
    query = ITEM_COLUMNS
    if q:
        query = query.where(Item.name.icontains(q, autoescape=True))
    return paginate("items", query, Item.id, limit, cursor)


def _load(item_id: uuid.UUID) -> Item:
    item = db.session.get(Item, item_id)
    if item is None:
        raise NotFound("item", item_id)
    return item


def create_item(name: str, description: str | None = None, quantity: int = 0) -> Row[Any]:
    """Insert and return the new row in one statement (the ORM's unit of work is half the
    cost of a create and buys nothing for a single new row)."""
    values = {"name": name, "description": description, "quantity": quantity}
    return transactions.write_one(INSERT_ITEM, values)


def update_item(
    item_id: uuid.UUID, changes: dict[str, Any], expected_version: int | None = None
) -> Item:
    """Apply `changes`, if the item is still at `expected_version` (None: any version)."""
    item = _load(item_id)
    require_version("item", item_id, item.version, expected_version)
    for field, value in changes.items():
        setattr(item, field, value)
    commit_versioned("item", item_id)
    return item


def delete_item(item_id: uuid.UUID, expected_version: int | None = None) -> None:
    """Delete the item, unless another capability still holds it (an open order).

    A hold taken while this runs (stock taken by an order) bumps the item's version, so
    the versioned DELETE misses and the caller is told the item changed (409/412).
    """
    item = _load(item_id)
    require_version("item", item_id, item.version, expected_version)
    for holder in current_app.extensions.get("item_holders", ()):
        reason = holder(item_id)
        if reason is not None:
            raise Conflict(f"The item cannot be deleted: {reason}.")
    db.session.delete(item)
    commit_versioned("item", item_id)


#: Asked before an item is deleted: why another capability still needs it, or None.
Holder = Callable[[uuid.UUID], str | None]


def init_holders(app: Flask, holders: Sequence[Holder]) -> None:
    """Register who may hold items (from `create_app()`): items know no other capability."""
    app.extensions["item_holders"] = tuple(holders)


@dataclass(frozen=True)
class Shortage:
    item_id: uuid.UUID
    requested: int
    available: int


class OutOfStock(Conflict):
    """Some items do not have the units asked for; nothing was taken."""

    def __init__(self, shortages: list[Shortage]) -> None:
        named = ", ".join(f"{s.item_id} ({s.available} of {s.requested})" for s in shortages)
        super().__init__(
            f"Not enough stock for {named}; nothing was taken.",
            shortages=[
                {"item_id": str(s.item_id), "requested": s.requested, "available": s.available}
                for s in shortages
            ],
        )


class UnknownItems(ValidationFailed):
    """Some items asked for do not exist; nothing was taken."""

    def __init__(self, item_ids: list[uuid.UUID], field: str = "lines") -> None:
        super().__init__(
            f"No such item: {', '.join(map(str, item_ids))}.",
            errors=[{"field": field, "message": f"no item {item_id}"} for item_id in item_ids],
            item_ids=[str(item_id) for item_id in item_ids],
        )


#: One conditional UPDATE per item: the row is taken only while enough is left, so two
#: buyers racing for the last units cannot both get them (the row lock orders them).
TAKE = (
    update(ITEMS)
    .where(ITEMS.c.id == bindparam("item_id"), ITEMS.c.quantity >= bindparam("units"))
    .values(
        quantity=ITEMS.c.quantity - bindparam("units"),
        version=ITEMS.c.version + 1,
        updated_at=bindparam("now"),
    )
    .returning(ITEMS.c.id, ITEMS.c.name)
)
PUT_BACK = (
    update(ITEMS)
    .where(ITEMS.c.id == bindparam("item_id"))
    .values(
        quantity=ITEMS.c.quantity + bindparam("units"),
        version=ITEMS.c.version + 1,
        updated_at=bindparam("now"),
    )
)


def take_stock(wanted: Mapping[uuid.UUID, int]) -> dict[uuid.UUID, str]:
    """Take `wanted[item]` units of every item in the caller's transaction, all or none.

    Items are taken in id order, so concurrent orders lock rows in the same order and
    never deadlock. Returns each item's name. Raises (after rolling back what was taken)
    `UnknownItems` when an item does not exist, else `OutOfStock` naming each short item.
    """
    now, names, short = utcnow(), {}, []
    for item_id in sorted(wanted):
        row = db.session.execute(
            TAKE, {"item_id": item_id, "units": wanted[item_id], "now": now}
        ).first()
        if row is None:
            short.append(item_id)
        else:
            names[item_id] = row.name
    if short:
        db.session.rollback()
        found = db.session.execute(
            select(ITEMS.c.id, ITEMS.c.quantity).where(ITEMS.c.id.in_(short))
        ).all()
        available: dict[uuid.UUID, int] = {row.id: row.quantity for row in found}
        db.session.rollback()
        unknown = [item_id for item_id in short if item_id not in available]
        if unknown:
            raise UnknownItems(unknown)
        raise OutOfStock([Shortage(i, wanted[i], available[i]) for i in short])
    return names


def return_stock(units: Mapping[uuid.UUID, int]) -> None:
    """Put units back on the shelf, in the caller's transaction (items deleted since are
    skipped: there is no shelf to return them to)."""
    now = utcnow()
    for item_id in sorted(units):
        db.session.execute(PUT_BACK, {"item_id": item_id, "units": units[item_id], "now": now})


def count_items() -> int:
    return db.session.scalar(select(func.count()).select_from(ITEMS)) or 0


def items_in_batches(batch_size: int) -> Iterator[list[Row[Any]]]:
    """Every item, oldest id first, `batch_size` rows at a time (for reports).

    Keyset by id, so each batch costs the same; plain rows, not ORM objects, so nothing
    piles up in the session and memory stays flat however many items there are. Reads
    through `db.session`, inside the caller's transaction (a worker's, for a job).
    """
    query = REPORT_COLUMNS.order_by(ITEMS.c.id).limit(batch_size)
    batch = list(db.session.execute(query))
    while batch:
        yield batch
        batch = list(db.session.execute(query.where(ITEMS.c.id > batch[-1].id)))
