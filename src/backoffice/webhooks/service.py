"""The webhook gateway: verify, store, acknowledge; process in the background.

A delivery is committed before it is acknowledged (201), and a redelivery of the same
id, even one racing the first, is answered 200 "duplicate" by the unique constraint.
Processing is a Celery task sent after the commit; the worker's relay sends what the
broker missed, and a lease lets a dead worker's event be processed again.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta
from typing import Any

import orjson
import structlog
from flask import current_app
from sqlalchemy import Row, Table, and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from backoffice.database import utcnow
from backoffice.errors import BadRequest, NotFound, Unauthorized
from backoffice.extensions import db
from backoffice.pagination import Page, paginate
from backoffice.queue import send
from backoffice.webhooks.handlers import HANDLERS
from backoffice.webhooks.models import EventStatus, WebhookEvent
from backoffice.webhooks.signatures import HeaderItems, verify

log = structlog.get_logger(__name__)

EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]
TASK_NAME = "backoffice.webhooks.process"
DEFAULT_SOURCE = "default"
SOURCE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_ATTEMPTS = 5
LEASE = timedelta(minutes=2)
RELAY_GRACE = timedelta(seconds=2)
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
    return payload


def _delivery_id(source: str, headers: HeaderItems, body: bytes, payload: dict[str, Any]) -> str:
    """Who vouches for the delivery, and its id: the signature's, or the payload's."""
    secret = current_app.config["WEBHOOK_SECRETS"].get(source)
    if secret:
        return verify(secret, headers, body)
    if source not in current_app.config["WEBHOOK_UNSIGNED_SOURCES"]:
        raise Unauthorized(
            f"The source {source!r} has no signing secret and may not deliver unsigned.",
            headers={"WWW-Authenticate": 'Webhook-Signature realm="webhooks"'},
        )
    given = payload.get("id")
    if isinstance(given, str | int) and str(given).strip():
        return str(given)[:255]
    return "sha256:" + hashlib.sha256(body).hexdigest()  # no id: the same body is the same event


def receive(source: str, headers: HeaderItems, body: bytes) -> tuple[WebhookEvent, bool]:
    """Store the delivery; `(event, True)` when new, `(the first copy, False)` when not."""
    if not SOURCE.fullmatch(source):
        raise NotFound("webhook source", source)
    payload = _parse(body)
    delivery_id = _delivery_id(source, headers, body, payload)
    kind = payload.get("type", payload.get("event"))
    event = WebhookEvent(
        source=source,
        delivery_id=delivery_id,
        event_type=str(kind)[:200] if kind is not None else None,
        payload=payload,
        raw_body=body,
    )
    db.session.add(event)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        first = db.session.scalars(
            select(WebhookEvent).where(
                WebhookEvent.source == source, WebhookEvent.delivery_id == delivery_id
            )
        ).one()
        return first, False
    enqueue(event.id)
    return event, True


def enqueue(event_id: uuid.UUID) -> bool:
    return send(TASK_NAME, EVENTS, event_id)


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
    event = get_event(event_id)
    event.status, event.last_error, event.lease_until = EventStatus.RECEIVED, None, None
    event.enqueued_at = None
    db.session.commit()
    enqueue(event.id)
    return event


# --- the worker side --------------------------------------------------------------


def process(event_id: uuid.UUID) -> bool:
    """Run the event's handler once for this claim. True when it should be retried."""
    now = utcnow()
    claimed = db.session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            or_(
                WebhookEvent.status == EventStatus.RECEIVED,
                and_(
                    WebhookEvent.status == EventStatus.PROCESSING,
                    WebhookEvent.lease_until < now,
                ),
            ),
        )
        .values(
            status=EventStatus.PROCESSING,
            attempts=WebhookEvent.attempts + 1,
            lease_until=now + LEASE,
        )
        .returning(WebhookEvent.attempts, WebhookEvent.event_type, WebhookEvent.payload)
    ).first()
    db.session.commit()
    if claimed is None:
        return False  # processed already, or being processed under a live lease
    handler = HANDLERS.get(claimed.event_type or "")
    try:
        if handler is not None:
            handler(claimed.payload)
    except Exception as error:  # a handler's failure is recorded, then retried
        db.session.rollback()
        log.exception("webhook_handler_failed", event_id=str(event_id))
        final = claimed.attempts >= MAX_ATTEMPTS
        _record(
            event_id,
            claimed.attempts,
            status=EventStatus.FAILED if final else EventStatus.RECEIVED,
            last_error=f"{type(error).__name__}: {error}"[:1000],
            lease_until=None,
        )
        return not final
    _record(
        event_id,
        claimed.attempts,
        status=EventStatus.PROCESSED,
        processed_at=utcnow(),
        last_error=None,
        lease_until=None,
    )
    return False


def _record(event_id: uuid.UUID, attempt: int, **values: Any) -> None:
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.attempts == attempt)
        .values(**values)
    )
    db.session.commit()


def relay() -> int:
    """Send again the events accepted but not in the queue, or stuck with a dead worker."""
    now = utcnow()
    stale = db.session.scalars(
        select(WebhookEvent.id).where(
            or_(
                and_(
                    WebhookEvent.status == EventStatus.RECEIVED,
                    WebhookEvent.enqueued_at.is_(None),
                    WebhookEvent.created_at < now - RELAY_GRACE,
                ),
                and_(
                    WebhookEvent.status == EventStatus.PROCESSING,
                    WebhookEvent.lease_until < now,
                ),
            )
        )
    ).all()
    db.session.rollback()
    return sum(enqueue(event_id) for event_id in stale)
