"""Inventory rules: plain values in, plain values (or APIError, StaleVersion) out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy import Row, Select, Table, bindparam, func, insert, select

from backoffice import transactions
from backoffice.errors import NotFound
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.pagination import Page, paginate
from backoffice.readonly import read_row
from backoffice.versioning import commit_versioned, require_version

#: The table behind `Item`, for the Core statements of the hot paths.
ITEMS = cast(Table, Item.__table__)
#: What a read returns: the item's columns as a row (`row.name`, `row.version`, ...).
ITEM_COLUMNS = select(*ITEMS.columns)
#: Built once: the hottest query in the service, by primary key.
ITEM_BY_ID = ITEM_COLUMNS.where(ITEMS.c.id == bindparam("item_id"))
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
    row = db.session.execute(
        insert(ITEMS)
        .values(name=name, description=description, quantity=quantity)
        .returning(*ITEMS.columns)
    ).one()
    transactions.commit()
    return row


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
    item = _load(item_id)
    require_version("item", item_id, item.version, expected_version)
    db.session.delete(item)
    commit_versioned("item", item_id)


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
