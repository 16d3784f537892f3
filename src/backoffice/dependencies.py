"""Services the API depends on, and what a request gets when one of them does not answer.

The database, a Redis rate-limit store and the broker can stop answering. A request
that needs one then gets 503 problem+json with `Retry-After`: never a 500, never a
request let through unchecked (authentication and login limits fail closed). The outage
is logged once, as a warning, not as a traceback per request, and its end once more.
Readiness (`{prefix}/health`) asks each dependency for real.

Nothing acknowledged is lost meanwhile: a 2xx is sent only once the work is committed, a
503 asks for a retry, and work committed while the broker is down waits for the relay
(see `backoffice.work`).
"""

from __future__ import annotations

import select
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from flask import Flask, Response, current_app
from limits.errors import StorageError
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException, InternalServerError

from backoffice.errors import (
    ServiceUnavailable,
    handle_api_error,
    handle_http_exception,
    handle_unexpected,
)

log = structlog.get_logger(__name__)

DATABASE = "database"
QUEUE = "queue"
#: Readiness's check of the revoked-tokens table. It is in the database, so a request
#: that cannot read it is 503 naming the database.
REVOCATION_STORE = "revocation_store"
RATE_LIMIT_STORE = "rate_limit_store"
#: How a problem body names each dependency.
DESCRIPTIONS = {
    DATABASE: "The database",
    QUEUE: "The job queue's broker",
    RATE_LIMIT_STORE: "The rate-limit store",
}

#: What a client is asked to wait before retrying a request a dependency could not serve.
RETRY_AFTER_SECONDS = 5
#: While a dependency stays down, its warning is repeated at most this often.
REMIND_AFTER_SECONDS = 60.0
#: A Redis that does not answer within this is taken to be down.
REDIS_TIMEOUT_SECONDS = 2

#: Database errors that may say "not answering now": a connection refused or lost, no
#: free connection in the pool, a lock or statement timeout, a deadlock to retry.
DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.TimeoutError)
#: SQLite raises OperationalError for a statement's mistakes too ("no such table"), which
#: are bugs; only these say it cannot serve now.
SQLITE_UNAVAILABLE = ("database is locked", "unable to open", "disk i/o error", "disk is full")


class DependencyUnavailable(ServiceUnavailable):
    """A dependency did not answer: 503 with `Retry-After`, whatever the request was."""

    slug = "dependency-unavailable"
    retry_after = RETRY_AFTER_SECONDS

    def __init__(self, dependency: str) -> None:
        super().__init__(f"{DESCRIPTIONS[dependency]} is not answering. Retry in a few seconds.")
        self.dependency = dependency


def redis_options() -> dict[str, Any]:
    """Options for every Redis client of the app (the limiter's storage): a Redis that
    does not answer within `REDIS_TIMEOUT_SECONDS` is down, so a request that needs it
    gets its 503 then instead of hanging with it."""
    return {
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
    }


@dataclass
class _Outage:
    since: float
    warned: float
    failures: int = 1


class Outages:
    """Which dependencies this process has seen down, so each outage is logged once.

    A failure marks its dependency down and logs a warning, unless it is down already
    (then it is only counted, and the warning repeated at most every
    `REMIND_AFTER_SECONDS`). A sign of life (a new database connection checked out, a
    Redis answer, a readiness check passing) marks it up again and logs the recovery.
    One per app, shared by its threads.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._down: dict[str, _Outage] = {}

    def failed(self, dependency: str, error: BaseException) -> None:
        now = self._clock()
        with self._lock:
            outage = self._down.get(dependency)
            if outage is None:
                outage = self._down[dependency] = _Outage(since=now, warned=now)
            else:
                outage.failures += 1
                if now - outage.warned < REMIND_AFTER_SECONDS:
                    return
                outage.warned = now
            failures, down_for = outage.failures, now - outage.since
        log.warning(
            "dependency_unavailable",
            dependency=dependency,
            error=_error_name(error),
            failures=failures,
            down_seconds=round(down_for, 1),
        )

    def answered(self, dependency: str) -> None:
        if dependency not in self._down:  # the common case: no lock taken
            return
        with self._lock:
            outage = self._down.pop(dependency, None)
        if outage is not None:
            log.info(
                "dependency_recovered",
                dependency=dependency,
                failures=outage.failures,
                down_seconds=round(self._clock() - outage.since, 1),
            )


def _error_name(error: BaseException) -> str:
    """The class of what actually failed (psycopg's `AdminShutdown`, not SQLAlchemy's
    wrapper), never its message: a database message can quote the values it was given."""
    cause = getattr(error, "orig", None) or error.__cause__ or error
    return type(cause).__name__


def outages(app: Flask | None = None) -> Outages:
    found: Outages = (app or current_app).extensions["outages"]
    return found


def unavailable_dependency(error: BaseException) -> str | None:
    """The dependency `error` says is down, or None when it is a bug or a client's error."""
    if isinstance(error, DependencyUnavailable):
        return error.dependency
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return DATABASE
    if isinstance(error, DATABASE_DOWN) and not _sqlite_statement_error(error):
        return DATABASE
    if isinstance(error, StorageError):  # the limiter's storage, wrapped by `limits`
        if isinstance(error.__cause__, sa_exc.SQLAlchemyError):  # database://: the database
            return unavailable_dependency(error.__cause__) or RATE_LIMIT_STORE
        return RATE_LIMIT_STORE
    return None


def _sqlite_statement_error(error: Exception) -> bool:
    cause = getattr(error, "orig", None)
    if not isinstance(cause, sqlite3.Error):
        return False
    message = str(cause).lower()
    return not any(unavailable in message for unavailable in SQLITE_UNAVAILABLE)


def handle_dependency_error(error: Exception) -> Response:
    dependency = unavailable_dependency(error)
    if dependency is None:
        return handle_unexpected(error)
    outages().failed(dependency, error)
    unavailable = error if isinstance(error, DependencyUnavailable) else None
    return handle_api_error(unavailable or DependencyUnavailable(dependency))


def handle_internal_error(error: InternalServerError) -> Response | HTTPException:
    """What Flask turns into a 500 itself: an exception raised after the view, while the
    response was being finished (the limiter's bookkeeping, say). A dependency that went
    down just then is still a 503."""
    original = error.original_exception
    if isinstance(original, Exception) and unavailable_dependency(original) is not None:
        return handle_dependency_error(original)
    return handle_http_exception(error)


def _closed_by_the_server(connection: psycopg.Connection[Any]) -> bool:
    """Whether an idle psycopg connection has been closed by the server.

    A server that restarts, or terminates a backend, sends a last message and closes the
    connection; at any other time an idle connection has nothing to read (after its
    startup the server speaks only when spoken to). So a readable socket is taken for a
    closed connection: checked without a round trip. A rare false alarm (an asynchronous
    notice) costs one reconnect.
    """
    if connection.closed:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: never hand out a connection the server has already closed.

    SQLAlchemy replaces it with a new one before the request uses it (or, with the server
    still down, fails the checkout: 503), so a PostgreSQL restart costs no request. Where
    `pool_pre_ping` would cost a round trip per checkout (~30 µs on loopback, a network
    round trip in production, and an authenticated read checks out twice), this costs a
    `poll()` of the socket.
    """
    if _closed_by_the_server(dbapi_connection):
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


def watch_database(app: Flask, engine: Engine) -> None:
    """Drop connections the server closed, and note each checkout as a sign of life."""
    found = outages(app)

    def answered(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        found.answered(DATABASE)

    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        event.listen(engine, "checkout", _refuse_closed_connection)
    event.listen(engine, "checkout", answered)


def init_dependencies(app: Flask) -> None:
    """Per-app outage bookkeeping, and the error handlers that turn a dependency that is
    down into a 503 wherever the request was when it found out."""
    app.extensions["outages"] = Outages()
    for error in (DependencyUnavailable, *DATABASE_DOWN, sa_exc.InterfaceError, StorageError):
        app.register_error_handler(error, handle_dependency_error)
    app.register_error_handler(InternalServerError, handle_internal_error)
