"""Readiness: ask every dependency, for real, whether it can serve a request now."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

from flask import current_app
from kombu.exceptions import KombuError
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from backoffice.auth import service as auth
from backoffice.dependencies import (
    DATABASE,
    QUEUE,
    RATE_LIMIT_STORE,
    REVOCATION_STORE,
    DependencyUnavailable,
    outages,
)
from backoffice.extensions import db, limiter
from backoffice.queue import celery_for

VERSION = version("backoffice")


def check_database() -> None:
    db.session.execute(text("SELECT 1"))
    db.session.rollback()


def check_queue() -> None:
    """The broker accepts a connection (the embedded one is a SQLite file)."""
    with celery_for(current_app).connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)


def check_revocation_store() -> None:
    """Revoked tokens can be read: the database's `revoked_tokens` table (not only a
    connection: a database not yet migrated fails here)."""
    auth.check_revocations()


def check_rate_limit_store() -> None:
    """Login attempts can be counted: in the database (the default), in this process
    (`memory://`), or in Redis."""
    if not limiter.storage.check():
        raise DependencyUnavailable(RATE_LIMIT_STORE)


#: Every dependency a request may need, by the name readiness reports it under.
CHECKS: dict[str, Callable[[], None]] = {
    DATABASE: check_database,
    QUEUE: check_queue,
    REVOCATION_STORE: check_revocation_store,
    RATE_LIMIT_STORE: check_rate_limit_store,
}
#: What a failing check may raise: the dependency is down, not the service broken.
UNAVAILABLE = (
    SQLAlchemyError,
    KombuError,
    RedisError,
    StorageError,
    OSError,
    DependencyUnavailable,
)


def run_checks() -> dict[str, str]:
    """`{"database": "ok" | "unavailable", ...}`. A failure is logged once per outage
    (with the requests that met the same outage), never exposed."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except UNAVAILABLE as error:
            outages().failed(name, error)
            db.session.rollback()
            results[name] = "unavailable"
        else:
            outages().answered(name)
            results[name] = "ok"
    return results
