"""Building blocks every capability's schemas share."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
)


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
    """A request body or query: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class OutputModel(BaseModel):
    """A response shape, read straight from ORM objects."""

    model_config = ConfigDict(from_attributes=True)
