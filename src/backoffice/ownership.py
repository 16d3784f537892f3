"""Rows a person owns (a `user_id` column): theirs and admins' to see, absent to others."""

from __future__ import annotations

import uuid
from typing import Protocol, TypeVar

from backoffice.errors import NotFound
from backoffice.extensions import db


class Owned(Protocol):
    @property
    def user_id(self) -> uuid.UUID | None: ...


T = TypeVar("T", bound=Owned)


def visible_to(
    model: type[T], resource: str, row_id: uuid.UUID, viewer_id: uuid.UUID, viewer_is_admin: bool
) -> T:
    """The row, if the viewer owns it or is an admin; else 404, as if it did not exist
    (another person's id never tells that it is taken)."""
    row = db.session.get(model, row_id)
    if row is None or (row.user_id != viewer_id and not viewer_is_admin):
        raise NotFound(resource, row_id)
    return row
