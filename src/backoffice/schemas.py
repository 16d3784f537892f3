"""Building blocks every capability's schemas share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
)


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store U+0000 in text; refuse it here rather than fail there.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


#: Strings are trimmed and NUL-free; pair with `trimmed(min, max)` inside `Annotated`.
no_nul = AfterValidator(_no_nul)


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
