"""Where revoked tokens live: the database by default, Redis when REDIS_URL says so.

Either way the revocation is shared by every worker process, and forgotten once the
token would have expired anyway (Redis expires its keys; retention deletes the rows, in
batches, off the request path: `backoffice.housekeeping`). Either way a store that does
not answer fails closed: no token is taken for unrevoked because its revocation could not
be read; the request is 503 (`backoffice.dependencies`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Protocol

import redis
from flask import Flask, current_app
from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError

from backoffice.auth.models import RevokedToken
from backoffice.database import utcnow
from backoffice.dependencies import (
    REDIS_DOWN,
    REVOCATION_STORE,
    DependencyUnavailable,
    Outages,
    outages,
    redis_options,
)
from backoffice.extensions import db
from backoffice.readonly import read_row


class Revocations(Protocol):
    def revoke(self, jti: str, expires_at: datetime) -> None: ...

    def is_revoked(self, jti: str) -> bool: ...

    def any_revoked(self, *jtis: str) -> bool: ...

    def spend(self, jti: str, expires_at: datetime) -> bool:
        """Revoke `jti` if nobody has yet, atomically: True for the one caller that did."""
        ...

    def check(self) -> None:
        """Raise unless the store answers now (readiness)."""
        ...

    #: True when revocations live in the database, so a caller may fold the check into
    #: its own query (`REVOKED`, with a `jti` parameter) and save a round trip.
    in_database: bool


#: Whether the token `:jti` is revoked, as an SQL expression.
REVOKED = exists().where(RevokedToken.jti == bindparam("jti"))


class DatabaseRevocations:
    in_database = True

    def revoke(self, jti: str, expires_at: datetime) -> None:
        db.session.add(RevokedToken(jti=jti, expires_at=expires_at))
        try:
            db.session.commit()
        except IntegrityError:  # revoked twice: already done
            db.session.rollback()

    def is_revoked(self, jti: str) -> bool:
        row = read_row(select(REVOKED), {"jti": jti})
        return bool(row and row[0])

    def check(self) -> None:
        self.is_revoked("readiness")

    def any_revoked(self, *jtis: str) -> bool:
        row = read_row(select(exists().where(RevokedToken.jti.in_(jtis))))
        return bool(row and row[0])

    def spend(self, jti: str, expires_at: datetime) -> bool:
        # The primary key is the compare-and-set: a second insert of `jti` conflicts.
        db.session.add(RevokedToken(jti=jti, expires_at=expires_at))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return False
        return True


class RedisRevocations:
    in_database = False

    def __init__(self, url: str, outages: Outages) -> None:
        self.client = redis.Redis.from_url(url, **redis_options())
        self.outages = outages

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """Redis down: 503 (`DependencyUnavailable`), never an answer made up without it."""
        try:
            yield
        except REDIS_DOWN as error:
            raise DependencyUnavailable(REVOCATION_STORE) from error
        self.outages.answered(REVOCATION_STORE)

    def check(self) -> None:
        with self._answering():
            self.client.ping()

    def revoke(self, jti: str, expires_at: datetime) -> None:
        seconds = max(1, int((expires_at - utcnow()).total_seconds()) + 1)
        with self._answering():
            self.client.set(f"backoffice:revoked:{jti}", 1, ex=seconds)

    def is_revoked(self, jti: str) -> bool:
        with self._answering():
            return bool(self.client.exists(f"backoffice:revoked:{jti}"))

    def any_revoked(self, *jtis: str) -> bool:
        with self._answering():
            return bool(self.client.exists(*(f"backoffice:revoked:{jti}" for jti in jtis)))

    def spend(self, jti: str, expires_at: datetime) -> bool:
        seconds = max(1, int((expires_at - utcnow()).total_seconds()) + 1)
        with self._answering():
            return bool(self.client.set(f"backoffice:revoked:{jti}", 1, ex=seconds, nx=True))


def init_revocations(app: Flask) -> None:
    url = app.config["REDIS_URL"]
    store = RedisRevocations(url, outages(app)) if url else DatabaseRevocations()
    app.extensions["revocations"] = store


def revocations() -> Revocations:
    store: Revocations = current_app.extensions["revocations"]
    return store
