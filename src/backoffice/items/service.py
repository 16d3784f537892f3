"""Inventory rules: plain values in, plain values (or APIError) out."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select
from werkzeug.datastructures import ETags

from backoffice.conventions import check_if_match, commit_versioned, etag_for
from backoffice.errors import NotFound
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.pagination import Page, paginate
from backoffice.readonly import read_row

#: The table behind `Item`, for the Core statements of the hot paths.
ITEMS = cast(Table, Item.__table__)
#: What a read returns: the item's columns as a row (`row.name`, `row.version`, ...).
ITEM_COLUMNS = select(*ITEMS.columns)
#: Built once: the hottest query in the service, by primary key.
ITEM_BY_ID = ITEM_COLUMNS.where(ITEMS.c.id == bindparam("item_id"))


def etag(item: Item | Row[Any]) -> str:
    return etag_for(item.id, item.version)


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
    db.session.commit()
    return row


def update_item(item_id: uuid.UUID, changes: dict[str, Any], if_match: ETags) -> Item:
    """Apply `changes` if the client's `If-Match` (when sent) still names this version."""
    item = _load(item_id)
    check_if_match(if_match, etag(item))
    for field, value in changes.items():
        setattr(item, field, value)
    commit_versioned("item", if_match)
    return item


def delete_item(item_id: uuid.UUID, if_match: ETags) -> None:
    item = _load(item_id)
    check_if_match(if_match, etag(item))
    db.session.delete(item)
    commit_versioned("item", if_match)
