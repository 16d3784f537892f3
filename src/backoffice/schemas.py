"""Building blocks every capability's schemas share."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from backoffice.storable import NUL_MESSAGE, nul_path


def _without_controls(allowed: str) -> AfterValidator:
    def check(value: str) -> str:
        # Control characters are never meant in text a person typed; U+0000 cannot even be
        # stored by PostgreSQL. Refuse them here rather than fail or mangle them later.
        if any(unicodedata.category(char) == "Cc" and char not in allowed for char in value):
            raise ValueError("must not contain control characters")
        return value

    return AfterValidator(check)


#: A name or title: no control characters at all.
single_line = _without_controls("")
#: Free text: line breaks and tabs allowed, other control characters not.
multi_line = _without_controls("\t\n\r")


def trimmed(min_length: int, max_length: int) -> StringConstraints:
    """Bounds checked after surrounding white space is removed (so "   " is empty)."""
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


#: ISO 8601 with an explicit `+00:00` (pydantic would write `Z`).
Timestamp = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str)]


class InputModel(BaseModel):
    """A request body or query: unknown fields are an error, not silently dropped, and no
    text in it holds U+0000, which PostgreSQL cannot store (`backoffice.storable`)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if nul_path(value) is not None:
            raise PydanticCustomError("nul_character", NUL_MESSAGE)
        return value


class PatchModel(InputModel):
    """A PATCH body: only the fields sent change, and at least one must be sent.

    Fields listed in `not_nullable` may be left out but not sent as null (a name, a
    quantity); the others may be cleared with null.
    """

    not_nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.not_nullable:
            raise PydanticCustomError("not_nullable", "may not be null")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise PydanticCustomError("empty_patch", "send at least one field to change")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class OutputModel(BaseModel):
    """A response shape, read straight from ORM objects."""

    model_config = ConfigDict(from_attributes=True)
