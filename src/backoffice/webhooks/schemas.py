from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field

from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import InputModel, OutputModel, Timestamp
from backoffice.webhooks.models import EventStatus


class Receipt(OutputModel):
    status: Literal["success", "duplicate"]
    id: uuid.UUID


class EventQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    source: str | None = Field(default=None, max_length=64)
    type: str | None = Field(default=None, max_length=200)
    status: EventStatus | None = None


class EventSummary(OutputModel):
    id: uuid.UUID
    source: str
    delivery_id: str
    event_type: str | None
    status: EventStatus
    attempts: int
    last_error: str | None
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp | None
    #: When the latest attempt ended: processed, ignored or failed.
    finished_at: Timestamp | None


class EventOut(EventSummary):
    payload: dict[str, Any]


class EventList(OutputModel):
    data: list[EventSummary]
    next_cursor: str | None
