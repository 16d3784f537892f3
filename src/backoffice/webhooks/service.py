"""The webhook gateway: verify, store, acknowledge; process in the background.

A delivery is committed before it is acknowledged (201), and a redelivery of the same
id, even one racing the first, is answered 200 "duplicate" by the unique constraint.
Processing runs through the leased-work engine (`backoffice.work`): sent after the
commit, relayed when the broker missed it, taken over when a worker died, its outcome
recorded once. What an event type does is a handler registered in `create_app()`; a
type nobody handles ends `ignored`, never silently `processed`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from flask import Flask, current_app
from sqlalchemy import Row, Table, select
from sqlalchemy.exc import IntegrityError

from backoffice import work
from backoffice.errors import BadRequest, NotFound, Unauthorized
from backoffice.extensions import db
from backoffice.pagination import Page, paginate
from backoffice.storable import NUL_MESSAGE, nul_path
from backoffice.transactions import commit
from backoffice.webhooks.models import EventStatus, WebhookEvent
from backoffice.webhooks.signatures import HeaderItems, verify

EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]
DEFAULT_SOURCE = "default"
SOURCE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: The longest delivery id and event type stored (the columns' lengths, on every database).
MAX_DELIVERY_ID = 255
MAX_EVENT_TYPE = 200

#: What an event type does with the event's payload. A handler may call
#: `attempt.renew()` to keep a long run's lease; its database writes commit in one
#: transaction with the event's outcome, so they happen once.
Handler = Callable[[dict[str, Any], work.Attempt], None]

QUEUE = work.WorkQueue(
    name="webhooks",
    table=EVENTS,
    task_name="backoffice.webhooks.process",
    waiting=EventStatus.RECEIVED,
    running=EventStatus.PROCESSING,
    failed=EventStatus.FAILED,
    lease_setting="WEBHOOK_LEASE_SECONDS",
    error_column="last_error",
    max_attempts=5,
    claim_columns=("event_type", "payload"),
)
LISTED_COLUMNS = select(*(c for c in EVENTS.columns if c.name not in {"raw_body", "payload"}))


def _parse(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise BadRequest("The delivery has no body: send the event as a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("The delivery is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequest("The delivery must be a JSON object.")
    path = nul_path(payload)
    if path is not None:
        raise _refuse(path, NUL_MESSAGE)
    return payload


def _refuse(field: str, message: str) -> BadRequest:
    return BadRequest(
        f"The delivery's {field} {message}.", errors=[{"field": field, "message": message}]
    )


def _text(value: str, field: str, max_length: int) -> str:
    """`value`, if it is 1 to `max_length` characters without control characters.

    Never cut to fit: two long ids that share a prefix would become one event, and the
    second delivery would be answered "duplicate" and lost. A partner told 400 stops
    retrying; one told 500 would redeliver forever.
    """
    if not value.strip() or len(value) > max_length:
        raise _refuse(field, f"must be 1 to {max_length} characters")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise _refuse(field, "must not contain control characters")
    return value


def _scalar(value: object) -> str | None:
    """A JSON string or integer as text; None for anything else (an object, a boolean)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _event_type(payload: dict[str, Any]) -> str | None:
    """The payload's `type` (or `event`): what decides which handler processes it."""
    field = "type" if "type" in payload else "event"
    kind = payload.get(field)
    if kind is None:
        return None
    text = _scalar(kind)
    if text is None:
        raise _refuse(field, "must be a string or an integer")
    return _text(text, field, MAX_EVENT_TYPE)


def _delivery_id(source: str, headers: HeaderItems, body: bytes, payload: dict[str, Any]) -> str:
    """Who vouches for the delivery, and its id: the signature's, or the payload's."""
    secret = current_app.config["WEBHOOK_SECRETS"].get(source)
    if secret:
        return _text(verify(secret, headers, body), "webhook-id", MAX_DELIVERY_ID)
    if source not in current_app.config["WEBHOOK_UNSIGNED_SOURCES"]:
        raise Unauthorized(
            f"The source {source!r} has no signing secret and may not deliver unsigned.",
            headers={"WWW-Authenticate": 'Webhook-Signature realm="webhooks"'},
        )
    given = _scalar(payload.get("id"))
    if given is not None and given.strip():
        return _text(given, "id", MAX_DELIVERY_ID)
    return "sha256:" + hashlib.sha256(body).hexdigest()  # no id: the same body is the same event


def receive(source: str, headers: HeaderItems, body: bytes) -> tuple[WebhookEvent, bool]:
    """Store the delivery; `(event, True)` when new, `(the first copy, False)` when not."""
    if not SOURCE.fullmatch(source):
        raise NotFound("webhook source", source)
    payload = _parse(body)
    delivery_id = _delivery_id(source, headers, body, payload)
    event = WebhookEvent(
        source=source,
        delivery_id=delivery_id,
        event_type=_event_type(payload),
        payload=payload,
        raw_body=body,
        status=EventStatus.RECEIVED,
    )
    db.session.add(event)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        first = db.session.scalars(
            select(WebhookEvent).where(
                WebhookEvent.source == source, WebhookEvent.delivery_id == delivery_id
            )
        ).one()
        return first, False
    work.send_after_commit(QUEUE, event.id)
    commit()
    return event, True


def list_events(
    limit: int,
    cursor: str | None,
    source: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
) -> Page[Row[Any]]:
    query = LISTED_COLUMNS
    for column, value in (("source", source), ("event_type", event_type), ("status", status)):
        if value is not None:
            query = query.where(EVENTS.c[column] == value)
    return paginate("webhook-events", query, WebhookEvent.id, limit, cursor)


def get_event(event_id: uuid.UUID) -> WebhookEvent:
    event = db.session.get(WebhookEvent, event_id)
    if event is None:
        raise NotFound("webhook event", event_id)
    return event


def replay(event_id: uuid.UUID) -> WebhookEvent:
    """Process the event again, whatever happened to it before."""
    if not work.requeue(QUEUE, event_id, last_error=None):
        raise NotFound("webhook event", event_id)
    return get_event(event_id)


def init_handlers(app: Flask, handlers: Mapping[str, Handler]) -> None:
    """Register what each event type does (from `create_app()`)."""
    app.extensions["webhook_handlers"] = dict(handlers)
    work.register(app, QUEUE, perform)


# --- the worker side --------------------------------------------------------------


def perform(attempt: work.Attempt) -> work.Outcome:
    """Run the handler of the event's type; `ignored` when there is none."""
    handlers: dict[str, Handler] = current_app.extensions["webhook_handlers"]
    handler = handlers.get(attempt.row.event_type or "")
    if handler is None:
        return work.Outcome(EventStatus.IGNORED)
    handler(attempt.row.payload, attempt)
    return work.Outcome(EventStatus.PROCESSED, {"last_error": None})
