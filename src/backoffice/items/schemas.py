from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field, StrictInt, StrictStr

from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import (
    InputModel,
    OutputModel,
    PatchModel,
    Timestamp,
    VersionedOutput,
    integral,
    multi_line,
    single_line,
    trimmed,
)

Name = Annotated[StrictStr, trimmed(1, 200), single_line, Field(examples=["Widget"])]
Description = Annotated[
    StrictStr, trimmed(0, 2000), multi_line, Field(examples=["A blue widget, 10 cm across"])
]
#: PostgreSQL's INTEGER: a larger count is a client error, not a database one.
Quantity = Annotated[StrictInt, Field(ge=0, le=2_147_483_647, examples=[25]), integral]
Search = Annotated[str, trimmed(1, 200), single_line]


class ItemIn(InputModel):
    """A new item. `description` defaults to null and `quantity` to 0."""

    name: Name
    description: Description | None = None
    quantity: Quantity = 0


class ItemReplace(InputModel):
    """PUT: every writable field is required, so nothing is reset by omission."""

    name: Name
    description: Description | None
    quantity: Quantity


class ItemPatch(PatchModel):
    """PATCH: only the fields sent change; at least one must be sent."""

    not_nullable = frozenset({"name", "quantity"})

    name: Name | None = None
    description: Description | None = None
    quantity: Quantity | None = None


class ItemQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    q: Search | None = Field(default=None, description="Case-insensitive search in names.")


class ItemOut(VersionedOutput):
    id: uuid.UUID
    name: str
    description: str | None
    quantity: int
    created_at: Timestamp
    updated_at: Timestamp


class ItemList(OutputModel):
    data: list[ItemOut]
    next_cursor: str | None
