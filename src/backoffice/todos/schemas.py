from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import InputModel, OutputModel, Timestamp, multi_line, trimmed

#: Free text: line breaks and tabs are fine, other control characters are not.
Task = Annotated[StrictStr, trimmed(1, 500), multi_line]


class TodoIn(InputModel):
    """A new todo. `done` defaults to false."""

    task: Task
    done: StrictBool = False


class TodoReplace(InputModel):
    """PUT: every writable field is required, so nothing is reset by omission."""

    task: Task
    done: StrictBool


class TodoPatch(InputModel):
    """PATCH: only the fields sent change; at least one must be sent."""

    task: Task | None = None
    done: StrictBool | None = None

    @field_validator("task", "done", mode="before")
    @classmethod
    def not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("not_nullable", "may not be null")
        return value

    @model_validator(mode="after")
    def not_empty(self) -> TodoPatch:
        if not self.model_fields_set:
            raise PydanticCustomError("empty_patch", "send at least one field to change")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class TodoQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    done: bool | None = Field(default=None, description="Only finished (true) or open (false).")


class TodoOut(OutputModel):
    id: uuid.UUID
    task: str
    done: bool
    created_at: Timestamp
    updated_at: Timestamp


class TodoList(OutputModel):
    data: list[TodoOut]
    next_cursor: str | None
