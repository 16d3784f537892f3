"""Rate-limit counters kept in the application's database: `RATELIMIT_STORAGE_URI=database://`,
the default.

Every server process and host shares them, and no other server is needed. Counters in
memory (`memory://`) are per process: under `make run`'s two Granian workers a client past
the login limit was refused by one worker and let in by the other, turn about. Redis
(`redis://`) is the faster shared choice where there is one.

A `limits` storage: naming `STORAGE_SCHEME` registers `database://` with `limits`, so
Flask-Limiter (chat) and `backoffice.attempts` (logins, sign-ups) both count here. It works on
the current app's engine, on a connection of its own that commits at once, so a count
never waits for, nor is rolled back with, the request's own transaction.
"""

from __future__ import annotations

import time
from typing import Any

from limits.storage import Storage
from sqlalchemy import Float, String, Table, case, delete, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, autocommit, upsert_insert
from backoffice.extensions import db


class RateLimitCounter(Base):
    """One fixed window's count for one key, forgotten once the window is over."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    count: Mapped[int]
    #: When the window ends, in seconds since the epoch (as `limits` reckons).
    expires_at: Mapped[float] = mapped_column(Float, index=True)


COUNTERS: Table = RateLimitCounter.__table__  # type: ignore[assignment]


class DatabaseStorage(Storage):
    """`limits`' fixed-window storage in a table: one atomic upsert per count."""

    STORAGE_SCHEME = ["database"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **_: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    @staticmethod
    def _engine() -> Engine:
        return db.engine  # the current app's: several apps in one process keep their own

    @property
    def storage(self) -> Engine:
        """Where the counts are kept, for `flask limiter config`: Flask-Limiter's CLI shows
        `storage.storage` of the limiter's storage (each of `limits`' own storages has
        one: its client), and crashed without it (tests/test_cli.py checks the command)."""
        return self._engine()

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add `amount` to `key`'s count (a window over starts again at `amount`) and
        return the new count, in one statement, whatever the concurrency."""
        now = time.time()
        engine = self._engine()
        new = upsert_insert(engine.dialect.name, COUNTERS).values(
            key=key, count=amount, expires_at=now + expiry
        )
        over = COUNTERS.c.expires_at <= now
        upsert = new.on_conflict_do_update(
            index_elements=[COUNTERS.c.key],
            set_={
                "count": case((over, new.excluded.count), else_=COUNTERS.c.count + amount),
                "expires_at": case((over, new.excluded.expires_at), else_=COUNTERS.c.expires_at),
            },
        ).returning(COUNTERS.c.count)
        # Single statements in autocommit: each commits as it runs, with no BEGIN or COMMIT
        # round trip, and holds the counter's row lock no longer than the statement.
        with autocommit(engine).connect() as connection:
            count: int = connection.execute(upsert).scalar_one()
            if count == amount:  # a new window: the moment to forget those long over
                connection.execute(delete(COUNTERS).where(COUNTERS.c.expires_at < now - 60))
        return count

    def get(self, key: str) -> int:
        with autocommit(self._engine()).connect() as connection:
            count = connection.scalar(
                select(COUNTERS.c.count).where(
                    COUNTERS.c.key == key, COUNTERS.c.expires_at > time.time()
                )
            )
        return int(count or 0)

    def get_expiry(self, key: str) -> float:
        with self._engine().connect() as connection:
            expires_at = connection.scalar(
                select(COUNTERS.c.expires_at).where(COUNTERS.c.key == key)
            )
        return float(expires_at) if expires_at is not None else time.time()

    def check(self) -> bool:
        with self._engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return True

    def reset(self) -> int | None:
        with self._engine().begin() as connection:
            return connection.execute(delete(COUNTERS)).rowcount

    def clear(self, key: str) -> None:
        with self._engine().begin() as connection:
            connection.execute(delete(COUNTERS).where(COUNTERS.c.key == key))
