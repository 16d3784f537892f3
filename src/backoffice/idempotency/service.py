"""Idempotency keys: a retried create replays the first answer instead of creating twice.

A key is claimed by inserting its row (the unique constraint arbitrates races
between workers), the request runs, and a successful answer is stored on the row.
A retry with the same key and body gets the stored answer; with another body, 422;
while the first is still running, 409. Failed attempts release the key, so a
corrected retry can use it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from backoffice.database import utcnow
from backoffice.errors import Conflict, ValidationFailed
from backoffice.extensions import db
from backoffice.idempotency.models import IdempotencyRecord

#: The response headers worth replaying; the rest are per-response.
REPLAYED_HEADERS = ("Content-Type", "Location", "ETag")


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes


#: A claim still in flight after this long was abandoned (its worker died mid-request:
#: the server and Nginx time requests out well before), so the key may be claimed again.
ABANDONED_AFTER = timedelta(minutes=2)


def claim(principal: str, key: str, fingerprint: str, ttl: int) -> StoredResponse | None:
    """Claim `key` for a new request, or return the answer a previous one stored."""
    now = utcnow()
    db.session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal,
            IdempotencyRecord.key == key,
            (IdempotencyRecord.expires_at < now)
            | (
                IdempotencyRecord.status_code.is_(None)
                & (IdempotencyRecord.created_at < now - ABANDONED_AFTER)
            ),
        )
    )
    record = IdempotencyRecord(
        principal=principal,
        key=key,
        fingerprint=fingerprint,
        expires_at=now + timedelta(seconds=ttl),
    )
    db.session.add(record)
    try:
        db.session.commit()
        return None
    except IntegrityError:
        db.session.rollback()
    existing = _record(principal, key)
    if existing.fingerprint != fingerprint:
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request body.",
            errors=[{"field": "Idempotency-Key", "message": "reused with another request"}],
        )
    if existing.status_code is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry later.")
    return StoredResponse(
        existing.status_code, existing.response_headers or {}, existing.response_body or b""
    )


def complete(principal: str, key: str, response: StoredResponse) -> None:
    record = _record(principal, key)
    record.status_code = response.status_code
    record.response_headers = response.headers
    record.response_body = response.body
    db.session.commit()


def release(principal: str, key: str) -> None:
    db.session.rollback()
    db.session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
        )
    )
    db.session.commit()


def _record(principal: str, key: str) -> IdempotencyRecord:
    return db.session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
        )
    ).one()
