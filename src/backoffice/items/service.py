"""Inventory rules: plain values in, plain values (or APIError) out."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.datastructures import ETags

from backoffice.conventions import check_if_match, etag_for
from backoffice.errors import Conflict, NotFound, PreconditionFailed
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.pagination import Page, paginate


def etag(item: Item) -> str:
    return etag_for(item.id, item.version)


def get_item(item_id: uuid.UUID) -> Item:
    item = db.session.get(Item, item_id)
    if item is None:
        raise NotFound("item", item_id)
    return item


def list_items(limit: int, cursor: str | None, q: str | None = None) -> Page[Item]:
    query = select(Item)
    if q:
        query = query.where(Item.name.icontains(q, autoescape=True))
    return paginate("items", query, Item.id, limit, cursor)


def create_item(name: str, description: str | None = None, quantity: int = 0) -> Item:
    item = Item(name=name, description=description, quantity=quantity)
    db.session.add(item)
    db.session.commit()
    return item


def update_item(item_id: uuid.UUID, changes: dict[str, Any], if_match: ETags) -> Item:
    """Apply `changes` if the client's `If-Match` (when sent) still names this version."""
    item = get_item(item_id)
    check_if_match(if_match, etag(item))
    for field, value in changes.items():
        setattr(item, field, value)
    _commit_guarded(if_match)
    return item


def delete_item(item_id: uuid.UUID, if_match: ETags) -> None:
    item = get_item(item_id)
    check_if_match(if_match, etag(item))
    db.session.delete(item)
    _commit_guarded(if_match)


def _commit_guarded(if_match: ETags) -> None:
    """Commit; a concurrent writer that got there first makes the versioned write miss."""
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        if if_match:
            raise PreconditionFailed(
                "The item changed while this request was being applied: GET it again."
            ) from None
        raise Conflict("The item was changed by another request at the same time; retry.") from None
