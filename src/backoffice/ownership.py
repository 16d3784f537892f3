"""Rows a person owns (a `user_id` column): theirs and admins' to see, absent to others."""

from __future__ import annotations

import uuid
from typing import Protocol, TypeVar

from backoffice.errors import NotFound
from backoffice.extensions import db


class Owned(Protocol):
    @property
    def user_id(self) -> uuid.UUID | None: ...


class Viewer(Protocol):
    """Who is looking: a person, and whether they see everyone's rows (an admin). What a
    view passes to a service (the caller, `guards.current_principal()`, is one)."""

    @property
    def user_id(self) -> uuid.UUID: ...

    @property
    def is_admin(self) -> bool: ...


T = TypeVar("T", bound=Owned)


def sees(viewer: Viewer, owner_id: uuid.UUID | None) -> bool:
    """Whether `viewer` may see a row of `owner_id`'s."""
    return viewer.is_admin or owner_id == viewer.user_id


def visible_to(model: type[T], resource: str, row_id: uuid.UUID, viewer: Viewer) -> T:
    """The row, if the viewer owns it or is an admin; else 404, as if it did not exist
    (another person's id never tells that it is taken)."""
    row = db.session.get(model, row_id)
    if row is None or not sees(viewer, row.user_id):
        raise NotFound(resource, row_id)
    return row
