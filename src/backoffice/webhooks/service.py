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
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson
from flask import Flask, current_app
from sqlalchemy import Row, Select, Table, bindparam, func, select

from backoffice import activity, transactions, work
from backoffice.database import first_id_at, upsert_insert
from backoffice.errors import BadRequest, NotFound, Unauthorized
from backoffice.extensions import db
from backoffice.housekeeping import Retention
from backoffice.pagination import Page, paginate
from backoffice.prepared import prepared
from backoffice.readonly import read_rows
from backoffice.webhooks.models import EventStatus, WebhookEvent
from backoffice.webhooks.signatures import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HeaderItems,
    sign,
    verify,
)

EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]
DEFAULT_SOURCE = "default"
SOURCE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: The longest delivery id and event type stored (the columns' lengths, on every database).
MAX_DELIVERY_ID = 255
MAX_EVENT_TYPE = 200
#: A control character: Unicode's category Cc is exactly these 65 code points (one regex
#: search instead of a category lookup per character).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The integers a `type` or `id` may be.
INT64 = range(-(2**63), 2**63)

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
    # Events run in milliseconds: those accepted together share a message.
    rows_per_message=50,
    claim_columns=("event_type", "payload"),
)
#: What retention removes (`backoffice.housekeeping`): a processed or ignored event
#: WEBHOOK_RETENTION_DAYS after it finished, a failed one after
#: WEBHOOK_FAILED_RETENTION_DAYS, so nothing that needs attention disappears unseen (a
#: replay makes one wait again: no longer due). A waiting or running one is never due.
RETENTION = Retention(
    EVENTS,
    EVENTS.c.id,
    EVENTS.c.finished_at,
    "WEBHOOK_RETENTION_DAYS",
    statuses=(EventStatus.PROCESSED, EventStatus.IGNORED),
)
FAILED_RETENTION = Retention(
    EVENTS,
    EVENTS.c.id,
    EVENTS.c.finished_at,
    "WEBHOOK_FAILED_RETENTION_DAYS",
    statuses=(EventStatus.FAILED,),
)
#: A new delivery's insert, by dialect: no row back when `(source, delivery_id)` exists.
INSERT_NEW = {
    name: prepared(
        upsert_insert(name, EVENTS)
        .on_conflict_do_nothing(index_elements=["source", "delivery_id"])
        .returning(EVENTS.c.id)
    )
    for name in ("postgresql", "sqlite")
}
FIRST_COPY = prepared(
    select(EVENTS.c.id).where(
        EVENTS.c.source == bindparam("source"), EVENTS.c.delivery_id == bindparam("delivery_id")
    )
)
#: "Replay every failed event matching": rows per transaction, and per request.
REPLAY_BATCH = 200
REPLAY_MOST = 5000
LISTED_COLUMNS = select(*(c for c in EVENTS.columns if c.name not in {"raw_body", "payload"}))


class UnsignedDelivery(Unauthorized):
    """An unsigned delivery from a source that must sign."""

    challenge = 'Webhook-Signature realm="webhooks"'


def _parse(body: bytes) -> dict[str, Any]:
    """The delivery as a JSON object, stored as the partner sent it.

    U+0000 is kept too: the payload column is JSON (not `jsonb`, not text), which holds
    the `\\u0000` escape on PostgreSQL and SQLite alike. Only the fields read as text
    (`type`, `event`, `id`) must do without it.
    """
    if not body.strip():
        raise BadRequest("The delivery has no body: send the event as a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("The delivery is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequest("The delivery must be a JSON object.")
    return payload


def _refuse(field: str, message: str) -> BadRequest:
    return BadRequest(
        f"The delivery's {field} {message}.", errors=[{"field": field, "message": message}]
    )


def _text(value: str, field: str, max_length: int) -> str:
    """`value`, if it is 1 to `max_length` characters without control characters
    (`schemas.DELIVERY_BODY` states the same rule).

    Never cut to fit: two long ids that share a prefix would become one event, and the
    second delivery would be answered "duplicate" and lost. A partner told 400 stops
    retrying; one told 500 would redeliver forever.
    """
    if not value or len(value) > max_length:
        raise _refuse(field, f"must be 1 to {max_length} characters")
    if CONTROL.search(value):
        raise _refuse(field, "must not contain control characters")
    return value


def _scalar(value: object) -> str | None:
    """A JSON string or integer (a 64-bit one, `3.0` included) as text; None otherwise."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and INT64.start <= value < INT64.stop:
        return str(value)
    return None


def _event_type(payload: dict[str, Any]) -> str | None:
    """The payload's `type` (or else `event`): what decides which handler processes it.

    Both are checked when present, so one rule holds for the body whichever is used.
    """
    kinds = {field: _kind(payload, field) for field in ("type", "event")}
    return kinds["type"] if "type" in payload else kinds["event"]


def _kind(payload: dict[str, Any], field: str) -> str | None:
    kind = payload.get(field)
    if kind is None:
        return None
    text = _scalar(kind)
    if text is None:
        raise _refuse(field, "must be a string or a 64-bit integer")
    return _text(text, field, MAX_EVENT_TYPE)


def _payload_id(payload: dict[str, Any]) -> str | None:
    """The payload's own `id` as text; None when it has none (absent, null or "")."""
    value = payload.get("id")
    if value is None:
        return None
    text = _scalar(value)
    if text is None:
        raise _refuse("id", "must be a string or a 64-bit integer")
    return _text(text, "id", MAX_DELIVERY_ID) if text else None


def _delivery_id(source: str, headers: HeaderItems, body: bytes, payload: dict[str, Any]) -> str:
    """Who vouches for the delivery, and its id: the signature's, or the payload's.

    The payload's `id` is checked whoever sends it (one rule per body, as documented).
    """
    given = _payload_id(payload)
    secret = current_app.config["WEBHOOK_SECRETS"].get(source)
    if secret:
        return _text(verify(secret, headers, body), "webhook-id", MAX_DELIVERY_ID)
    if source not in current_app.config["WEBHOOK_UNSIGNED_SOURCES"]:
        raise UnsignedDelivery(
            f"The source {source!r} has no signing secret and may not deliver unsigned."
        )
    if given is not None:
        return given
    return "sha256:" + hashlib.sha256(body).hexdigest()  # no id: the same body is the same event


def receive(source: str, headers: HeaderItems, body: bytes) -> tuple[uuid.UUID, bool]:
    """Store the delivery; `(its id, True)` when new, `(the first copy's id, False)` when not.

    One statement stores it and checks for a duplicate (`ON CONFLICT DO NOTHING`), in
    autocommit: committed when it returns, with no BEGIN or COMMIT of its own. Then the
    event is handed to the process's sender (`work.send_soon`), which sends it to the
    queue in a batch with others, after the answer; if the broker does not take it, or
    the process dies first, the relay sends it later.
    """
    if not SOURCE.fullmatch(source):
        raise NotFound("webhook source", source)
    payload = _parse(body)
    delivery_id = _delivery_id(source, headers, body, payload)
    values = {
        "source": source,
        "delivery_id": delivery_id,
        "event_type": _event_type(payload),
        "payload": payload,
        "raw_body": body,
        "status": EventStatus.RECEIVED,
    }
    stored = transactions.write_alone(INSERT_NEW[db.engine.dialect.name], values)
    if not stored:  # a redelivery, or a racing copy of this one
        (first,) = read_rows(FIRST_COPY, {"source": source, "delivery_id": delivery_id})
        return first.id, False
    created: uuid.UUID = stored[0].id
    work.send_soon(QUEUE, created)
    return created, True


def deliver(source: str, payload: dict[str, Any], delivery_id: str) -> tuple[uuid.UUID, bool]:
    """`receive` a delivery as the source's partner would send it: signed with the
    source's secret when it has one, unsigned otherwise (refused unless the source may
    deliver unsigned). For data made on this side, such as `flask seed --demo`'s: every
    check a partner's delivery passes, this one passes too."""
    body = orjson.dumps({**payload, "id": delivery_id})
    headers: dict[str, str] = {}
    secret = current_app.config["WEBHOOK_SECRETS"].get(source)
    if secret:
        at = int(time.time())
        headers = {
            ID_HEADER: delivery_id,
            TIMESTAMP_HEADER: str(at),
            SIGNATURE_HEADER: sign(secret, delivery_id, at, body),
        }
    return receive(source, headers, body)


def accepts_deliveries(source: str) -> bool:
    """Whether `source` can deliver at all: it has a secret, or may deliver unsigned."""
    config = current_app.config
    return (
        bool(config["WEBHOOK_SECRETS"].get(source)) or source in config["WEBHOOK_UNSIGNED_SOURCES"]
    )


def _matching(
    query: Select[Any],
    source: str | None,
    event_type: str | None,
    status: str | None,
    received_from: datetime | None,
    received_before: datetime | None,
) -> Select[Any]:
    """`query` narrowed to the events that match: by equality, and by the time they were
    received as a range on the UUIDv7 id (`first_id_at`), so a page stays a keyset range."""
    for column, value in (("source", source), ("event_type", event_type), ("status", status)):
        if value is not None:
            query = query.where(EVENTS.c[column] == value)
    if received_from is not None:
        query = query.where(EVENTS.c.id >= first_id_at(received_from))
    if received_before is not None:
        query = query.where(EVENTS.c.id < first_id_at(received_before))
    return query


def list_events(
    limit: int,
    cursor: str | None,
    source: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    received_from: datetime | None = None,
    received_before: datetime | None = None,
) -> Page[Row[Any]]:
    """Stored events, newest first, matching every filter given (received from
    `received_from`, and before `received_before`)."""
    query = _matching(LISTED_COLUMNS, source, event_type, status, received_from, received_before)
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


def replay_failed(
    source: str | None = None,
    event_type: str | None = None,
    received_from: datetime | None = None,
    received_before: datetime | None = None,
    batch: int = REPLAY_BATCH,
    most: int = REPLAY_MOST,
) -> int:
    """Process again every failed event that matches (as `list_events` filters), at most
    `most` of them; how many were replayed.

    In batches of `batch`, oldest first, each one transaction: the ids are read, then one
    UPDATE fenced on `failed` makes them wait again (an event replayed or changed since it
    was read is left alone), then each is sent. The keyset walks forward, so an event
    that fails again while this runs is not replayed twice. The caller reports the count;
    `most` keeps one request's work bounded (a count of `most` may mean more remain).
    """
    query = _matching(
        select(EVENTS.c.id),
        source,
        event_type,
        EventStatus.FAILED,
        received_from,
        received_before,
    ).order_by(EVENTS.c.id)
    replayed, after = 0, None
    while replayed < most:
        page = query if after is None else query.where(EVENTS.c.id > after)
        ids = db.session.scalars(page.limit(min(batch, most - replayed))).all()
        if not ids:
            break
        after = ids[-1]
        requeued = work.requeue_many(QUEUE, ids, QUEUE.failed, last_error=None)
        replayed += len(requeued)
    return replayed


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


# --- the overview's figures (`backoffice.activity`) -------------------------------------

#: The outcomes an event can end with, as the overview charts them.
FINISHED = (EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.FAILED)


def count_outcomes(start: datetime, end: datetime) -> dict[str, float]:
    """Events that finished in `[start, end)`, by status: one range of the
    `(status, finished_at)` index per status, so an hour costs what that hour holds."""
    counted = select(EVENTS.c.status, func.count()).where(
        EVENTS.c.status.in_(FINISHED), EVENTS.c.finished_at >= start, EVENTS.c.finished_at < end
    )
    found = db.session.execute(counted.group_by(EVENTS.c.status))
    return {str(status): float(count) for status, count in found}


#: Tallied each hour by the worker (`activity.Tally`), read by `outcomes_per_hour`.
OUTCOMES = activity.Tally("webhook_outcomes", count_outcomes)


def outcomes_per_hour(hours: int = 24) -> activity.Hourly:
    """Events finished per hour by outcome, the last `hours` hours, as last tallied."""
    return activity.hourly(OUTCOMES.series, hours)
