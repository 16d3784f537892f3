"""The declarative base every model shares, and the column types they agree on."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import flask_sqlalchemy.session
import uuid_utils.compat as uuid_utils
from sqlalchemy import DateTime, MetaData, Table, TypeDecorator, Uuid
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

#: Stable constraint names, so Alembic migrations name the same thing on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    """A time-ordered UUIDv7: sorts by creation, so the primary key doubles as a cursor."""
    return uuid_utils.uuid7()


def first_id_at(moment: datetime) -> uuid.UUID:
    """The smallest id `new_id` can make at or after `moment` (greater than every id made
    before it): the id's first 48 bits are its millisecond, so a time bound on rows is a
    bound on their ids, and a time filter stays a keyset range on the primary key."""
    millisecond = int(moment.timestamp() * 1000)
    return uuid.UUID(int=max(millisecond, 0) << 80)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    PostgreSQL keeps the offset; SQLite drops it, so values are normalised to UTC on
    the way in and tagged as UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stored: datetime = value
        if stored.tzinfo is UTC:  # PostgreSQL's answer in a UTC session: as it is
            return stored
        if stored.tzinfo is None:
            return stored.replace(tzinfo=UTC)
        return stored.astimezone(UTC)


def upsert_insert(dialect_name: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """`INSERT` into `table` with the `ON CONFLICT` clauses of the database at hand
    (PostgreSQL's, or SQLite's: the two this app runs on)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@functools.lru_cache(maxsize=8)
def autocommit(engine: Engine) -> Engine:
    """The same engine (and pool) with every statement committed as it runs."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


#: Whether the session, in this context, reads without a transaction: only `reads_only()`
#: sets it. A context variable, so each thread (and each request on it) has its own.
_READS_ONLY: ContextVar[bool] = ContextVar("backoffice_reads_only", default=False)


@contextmanager
def reads_only() -> Iterator[None]:
    """Within it, `db.session` runs each statement in autocommit, with no transaction.

    For work that only reads: under READ COMMITTED every statement sees its own snapshot
    anyway, so it loses nothing, and saves the BEGIN and ROLLBACK round trips that were a
    third of a read's cost. The HTTP layer opens it for the safe methods, which by HTTP's
    rules change nothing (`conventions.read_safe_requests_in_autocommit`); anything else
    (other methods, CLI commands, tasks) keeps full transactions unless it asks.

    The session chooses when it takes a connection: enter this before its first statement
    (or after a commit or rollback), not halfway through a transaction it already holds.
    """
    token = _READS_ONLY.set(True)
    try:
        yield
    finally:
        _READS_ONLY.reset(token)


class RequestSession(flask_sqlalchemy.session.Session):
    """A session that reads without a transaction inside `reads_only()`, and only there.

    The decision is the caller's, made explicit: this module knows nothing of HTTP. (It
    once looked at the request's method itself, so any code that ran within a GET,
    whatever it was, was silently in autocommit.)
    """

    def get_bind(
        self,
        mapper: Any | None = None,
        clause: Any | None = None,
        bind: Any | None = None,
        **kwargs: Any,
    ) -> Any:
        engine = super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
        if isinstance(engine, Engine) and _READS_ONLY.get():
            return autocommit(engine)
        return engine


class Base(DeclarativeBase):
    # Given as a registry: Flask-SQLAlchemy copies the base, and SQLAlchemy 2.1 refuses a
    # copied base that carries both a registry and its own type_annotation_map.
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={uuid.UUID: Uuid(), datetime: UTCDateTime()},
    )


class ResourceMixin:
    """`id`, `created_at` and `updated_at`, which every resource in the contract carries."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Alembic autogenerate: write our column types as the plain SQLAlchemy ones they store."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False
