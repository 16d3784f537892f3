from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field, StrictBool, StrictStr

from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import (
    InputModel,
    OutputModel,
    PatchModel,
    Timestamp,
    VersionedOutput,
    multi_line,
    trimmed,
)

#: Free text: line breaks and tabs are fine, other control characters are not.
Task = Annotated[
    StrictStr, trimmed(1, 500), multi_line, Field(examples=["Count the widgets in aisle 3"])
]


class TodoIn(InputModel):
    """A new todo. `done` defaults to false."""

    task: Task
    done: StrictBool = False


class TodoReplace(InputModel):
    """PUT: every writable field is required, so nothing is reset by omission."""

    task: Task
    done: StrictBool


class TodoPatch(PatchModel):
    """PATCH: only the fields sent change; at least one must be sent."""

    not_nullable = frozenset({"task", "done"})

    task: Task | None = None
    done: StrictBool | None = None


class TodoQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    done: bool | None = Field(default=None, description="Only finished (true) or open (false).")


class TodoOut(VersionedOutput):
    id: uuid.UUID
    task: str
    done: bool
    created_at: Timestamp
    updated_at: Timestamp


class TodoList(OutputModel):
    data: list[TodoOut]
    next_cursor: str | None
