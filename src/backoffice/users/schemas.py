from __future__ import annotations

import uuid
from typing import Annotated, ClassVar

from pydantic import Field, StrictBool, StrictStr

from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import (
    Email,
    InputModel,
    OutputModel,
    PatchModel,
    Timestamp,
    single_line,
    trimmed,
)
from backoffice.users.models import Role

Name = Annotated[StrictStr, trimmed(1, 200), single_line, Field(examples=["Ada Lovelace"])]


#: Not trimmed: a password is taken exactly as typed. Bounded so hashing stays cheap.
Password = Annotated[
    StrictStr, Field(min_length=8, max_length=256, examples=["correct horse battery staple"])
]


class UserIn(InputModel):
    name: Name
    email: Email
    password: Password


class UserPatch(PatchModel):
    """Only the fields sent change. `role` and `active` are for admins only. Changing your
    own `password` or `email` takes your `current_password` too (an admin changing someone
    else's does not)."""

    not_nullable = frozenset({"name", "email", "password", "current_password", "role", "active"})
    #: `current_password` only ever comes with a new `password` or `email` (422 otherwise).
    sent_only_with: ClassVar[dict[str, list[str]]] = {"current_password": ["password", "email"]}

    name: Name | None = None
    email: Email | None = None
    password: Password | None = None
    current_password: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Your password: required with a new `password` or `email` of your own "
        "(422 if missing or wrong), sent only with one of them.",
        examples=["my current passphrase"],
    )
    role: Role | None = None
    active: StrictBool | None = None


class UserQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    active: bool | None = None
    role: Role | None = None


class UserOut(OutputModel):
    id: uuid.UUID
    name: str
    email: str
    role: Role
    active: bool
    created_at: Timestamp
    updated_at: Timestamp


class UserList(OutputModel):
    data: list[UserOut]
    next_cursor: str | None
