from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field

from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import InputModel, OutputModel, Timestamp

# Re-exported: the console reads the status words from here (not the models).
from backoffice.webhooks.models import EventStatus as EventStatus
from backoffice.webhooks.service import INT64, MAX_DELIVERY_ID, MAX_EVENT_TYPE

#: Text read from a delivery holds no control characters (U+0000-U+001F, U+007F-U+009F).
_NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*$"
_INT64 = {"type": "integer", "minimum": INT64.start, "maximum": INT64.stop - 1}
_KIND = {
    "anyOf": [
        _INT64,
        {"type": "string", "minLength": 1, "maxLength": MAX_EVENT_TYPE, "pattern": _NO_CONTROLS},
        {"type": "null"},
    ]
}

#: What the gateway accepts (`service.receive` checks it): any JSON object, stored as
#: sent, whose `type`, `event` and `id`, the fields it reads, are bounded text or integers.
DELIVERY_BODY: dict[str, Any] = {
    "type": "object",
    "description": "The partner's event, stored as sent (any JSON object).",
    "properties": {
        "type": {
            **_KIND,
            "description": "Which handler processes the event",
            "examples": ["payment_success"],
        },
        "event": {
            **_KIND,
            "description": "Read as `type` when `type` is absent",
            "examples": ["payment_success"],
        },
        "id": {
            "anyOf": [
                _INT64,
                {"type": "string", "maxLength": MAX_DELIVERY_ID, "pattern": _NO_CONTROLS},
                {"type": "null"},
            ],
            "description": "An unsigned delivery's id (redeliveries share it); without one, "
            "the same body is the same event",
            "examples": ["evt_0001"],
        },
    },
}


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
