from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field, StrictInt, StrictStr

from backoffice.openapi import Problem
from backoffice.orders.models import OrderStatus
from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import (
    InputModel,
    OutputModel,
    Timestamp,
    VersionedOutput,
    integral,
    multi_line,
    trimmed,
)

MAX_LINES = 100
MAX_UNITS = 10_000

Units = Annotated[StrictInt, Field(ge=1, le=MAX_UNITS, examples=[2]), integral]
Note = Annotated[
    StrictStr, trimmed(0, 1000), multi_line, Field(examples=["Deliver to the loading dock"])
]


class LineIn(InputModel):
    item_id: uuid.UUID = Field(
        description="An item that exists (422 naming the ones that do not).",
        examples=["0193a5c2-7b1e-7c4d-9e2f-3a4b5c6d7e8f"],
    )
    quantity: Units


class OrderIn(InputModel):
    """1-100 lines of 1-10,000 units each. Lines naming the same item are merged (their
    units added up, still at most 10,000 per item)."""

    lines: Annotated[list[LineIn], Field(min_length=1, max_length=MAX_LINES)]
    note: Note | None = None


class OrderQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    status: OrderStatus | None = None
    user_id: uuid.UUID | None = Field(
        default=None, description="Admins: one person's orders (members only see their own)."
    )


class LineOut(OutputModel):
    item_id: uuid.UUID | None
    name: str
    quantity: int


class OrderOut(VersionedOutput):
    id: uuid.UUID
    user_id: uuid.UUID | None
    status: OrderStatus
    lines: list[LineOut]
    note: str | None
    total_quantity: int
    payment_reference: str | None
    created_at: Timestamp
    updated_at: Timestamp
    paid_at: Timestamp | None
    fulfilled_at: Timestamp | None
    cancelled_at: Timestamp | None


class OrderList(OutputModel):
    data: list[OrderOut]
    next_cursor: str | None


class Shortage(OutputModel):
    item_id: uuid.UUID
    requested: int
    available: int


class ShortageProblem(Problem):
    """The 409 of an order asking for more than is in stock (the document's type for it)."""

    shortages: list[Shortage] | None = Field(
        default=None, description="Each short item: what was asked, what is available."
    )
