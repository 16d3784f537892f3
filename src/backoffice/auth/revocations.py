"""Where revoked tokens live: the database by default, Redis when REDIS_URL says so.

Either way the revocation is shared by every worker process, and forgotten once the
token would have expired anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import redis
from flask import Flask, current_app
from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.exc import IntegrityError

from backoffice.auth.models import RevokedToken
from backoffice.database import utcnow
from backoffice.extensions import db
from backoffice.readonly import read_row


class Revocations(Protocol):
    def revoke(self, jti: str, expires_at: datetime) -> None: ...

    def is_revoked(self, jti: str) -> bool: ...

    #: True when revocations live in the database, so a caller may fold the check into
    #: its own query (`REVOKED`, with a `jti` parameter) and save a round trip.
    in_database: bool


#: Whether the token `:jti` is revoked, as an SQL expression.
REVOKED = exists().where(RevokedToken.jti == bindparam("jti"))


class DatabaseRevocations:
    in_database = True

    def revoke(self, jti: str, expires_at: datetime) -> None:
        db.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
        db.session.add(RevokedToken(jti=jti, expires_at=expires_at))
        try:
            db.session.commit()
        except IntegrityError:  # revoked twice: already done
            db.session.rollback()

    def is_revoked(self, jti: str) -> bool:
        row = read_row(select(REVOKED), {"jti": jti})
        return bool(row and row[0])


class RedisRevocations:
    in_database = False

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def revoke(self, jti: str, expires_at: datetime) -> None:
        seconds = max(1, int((expires_at - utcnow()).total_seconds()) + 1)
        self.client.set(f"backoffice:revoked:{jti}", 1, ex=seconds)

    def is_revoked(self, jti: str) -> bool:
        return bool(self.client.exists(f"backoffice:revoked:{jti}"))


def init_revocations(app: Flask) -> None:
    url = app.config["REDIS_URL"]
    app.extensions["revocations"] = RedisRevocations(url) if url else DatabaseRevocations()


def revocations() -> Revocations:
    store: Revocations = current_app.extensions["revocations"]
    return store
