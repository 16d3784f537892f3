"""Idempotency keys: a retried create replays the first answer instead of creating twice.

1. **Claim** (its own short transaction): insert the key's row, in flight. The unique
   constraint arbitrates racing duplicates, so the loser learns at once: 409 while the
   first is in flight, the stored answer once it is done, 422 for another body.
2. **Create and complete** (one transaction): the resource and the answer stored on the
   claim commit together. Storing the answer is fenced on the claim's row id, so a claim
   that was taken over can no longer commit its resource.

A crash before that commit leaves no resource, only a claim in flight; a crash after it
leaves both, and the retry replays. A claim left in flight is taken over: on PostgreSQL
within seconds, since the creating transaction holds the claim's row lock while it lives
(a dead server's connection releases it); elsewhere once it is `ABANDONED_AFTER` old.
Failed attempts release the key, so a corrected retry can use it again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from backoffice.database import utcnow
from backoffice.errors import Conflict, ValidationFailed
from backoffice.extensions import db
from backoffice.housekeeping import Retention
from backoffice.idempotency.models import IdempotencyRecord

#: The response headers worth replaying; the rest are per-response.
REPLAYED_HEADERS = ("Content-Type", "Location", "ETag")

#: Where row locks cannot tell a live claim from a dead one (SQLite), a claim still in
#: flight after this long was abandoned: the server and Nginx time requests out well
#: before, so the key may be claimed again.
ABANDONED_AFTER = timedelta(minutes=2)
#: On PostgreSQL a claim is locked by its request a moment after it is made; one still
#: unlocked this long after was left by a request that died.
LOCK_GRACE = timedelta(seconds=3)

IN_FLIGHT = "A request with this Idempotency-Key is still in progress; retry later."

RECORDS: Table = IdempotencyRecord.__table__  # type: ignore[assignment]


def _answered_or_abandoned(now: datetime) -> ColumnElement[bool]:
    return or_(RECORDS.c.status_code.is_not(None), RECORDS.c.created_at < now - ABANDONED_AFTER)


#: What retention removes (`backoffice.housekeeping`): a record once it has expired, if it
#: was answered or its claim abandoned; a live request's claim is never taken from under it.
RETENTION = Retention(RECORDS, RECORDS.c.id, RECORDS.c.expires_at, where=_answered_or_abandoned)


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """A key this request holds: the row whose id fences its completion."""

    principal: str
    key: str
    record_id: uuid.UUID


def claim(principal: str, key: str, fingerprint: str, ttl: int) -> Claim | StoredResponse:
    """Claim `key` for a new request, or return the answer a previous one stored."""
    now = utcnow()
    db.session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at < now,
        )
    )
    record_id = _insert(principal, key, fingerprint, ttl)
    if record_id is not None:
        return Claim(principal, key, record_id)
    existing = _record(principal, key)
    if existing is None:  # expired and deleted between our insert and our read
        raise Conflict(IN_FLIGHT)
    if existing.fingerprint != fingerprint:
        db.session.rollback()
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request body.",
            errors=[{"field": "Idempotency-Key", "message": "reused with another request"}],
        )
    if existing.status_code is not None:
        db.session.rollback()
        return StoredResponse(
            existing.status_code, existing.response_headers or {}, existing.response_body or b""
        )
    if not _abandoned(existing):
        db.session.rollback()
        raise Conflict(IN_FLIGHT)
    return _take_over(existing, principal, key, fingerprint, ttl)


def _insert(principal: str, key: str, fingerprint: str, ttl: int) -> uuid.UUID | None:
    record = IdempotencyRecord(
        principal=principal,
        key=key,
        fingerprint=fingerprint,
        expires_at=utcnow() + timedelta(seconds=ttl),
    )
    db.session.add(record)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return None
    return record.id


def _abandoned(existing: IdempotencyRecord) -> bool:
    """Is the in-flight claim's request gone? (Called inside the claim's transaction.)"""
    if db.session.get_bind().dialect.name == "postgresql":
        if existing.created_at > utcnow() - LOCK_GRACE:
            return False
        # The creating transaction holds this row's lock for as long as it lives.
        unlocked = db.session.scalar(
            select(IdempotencyRecord.id)
            .where(IdempotencyRecord.id == existing.id, IdempotencyRecord.status_code.is_(None))
            .with_for_update(skip_locked=True)
        )
        return unlocked is not None
    return existing.created_at < utcnow() - ABANDONED_AFTER


def _take_over(
    existing: IdempotencyRecord, principal: str, key: str, fingerprint: str, ttl: int
) -> Claim:
    """Replace a dead request's claim with ours: a new row id fences the old one out."""
    db.session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.id == existing.id, IdempotencyRecord.status_code.is_(None)
        )
    )
    db.session.commit()
    record_id = _insert(principal, key, fingerprint, ttl)
    if record_id is None:
        raise Conflict(IN_FLIGHT)  # another retry took it over first
    return Claim(principal, key, record_id)


def hold(claimed: Claim) -> None:
    """Start the creating transaction by locking our claim: a live request's claim is
    never taken over (PostgreSQL), and one that was taken over cannot go on."""
    held = db.session.scalar(
        select(IdempotencyRecord.id)
        .where(IdempotencyRecord.id == claimed.record_id, IdempotencyRecord.status_code.is_(None))
        .with_for_update()
    )
    if held is None:
        raise Conflict(IN_FLIGHT)


def complete(claimed: Claim, response: StoredResponse) -> None:
    """Store the answer in the creating transaction (the caller commits both at once)."""
    done = db.session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == claimed.record_id, IdempotencyRecord.status_code.is_(None))
        .values(
            status_code=response.status_code,
            response_headers=response.headers,
            response_body=response.body,
        )
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise Conflict(IN_FLIGHT)  # taken over meanwhile: our resource must not commit


def release(claimed: Claim) -> None:
    """Give the key back after a failed attempt, so a corrected retry may use it."""
    db.session.rollback()
    db.session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.id == claimed.record_id, IdempotencyRecord.status_code.is_(None)
        )
    )
    db.session.commit()


def _record(principal: str, key: str) -> IdempotencyRecord | None:
    return db.session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
        )
    ).first()
