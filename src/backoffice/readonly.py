"""Reads for the hot paths: a pooled connection in autocommit, rows instead of ORM objects.

A session and ORM identity map are worth their cost when rows are changed; a row that
goes straight into a response needs neither. Measured on the item read, this is about a
fifth of its CPU (see docs/benchmarks.md). Writes keep using `db.session`.

A statement built once and run on every request (the item by id, a page of items, a
token's state) can be declared `prepared()`. On PostgreSQL through psycopg such a
statement is compiled once per process, and then run straight on the pooled driver
connection: the same SQL, the same pool (its checkout checks, its metrics), the same
type conversions in and out, the same errors (wrapped as SQLAlchemy wraps them, a
dropped connection invalidated), without SQLAlchemy's per-execution machinery (a
`Connection`, its events, the compiled cache lookup, the result object), which was
about 40% of an item read's database CPU. psycopg prepares it server-side after a few
runs, as it does for SQLAlchemy. Any other statement, and every statement on SQLite,
goes through SQLAlchemy as before; tests/test_readonly.py holds the two ways to the
same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from weakref import WeakKeyDictionary, WeakSet

from sqlalchemy import Row, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.engine.result import result_tuple

from backoffice.database import autocommit
from backoffice.extensions import db

S = TypeVar("S", bound=Select[Any])
Processor = Callable[[Any], Any]

#: Statements declared `prepared()`: only these get a plan (a statement built per request
#: would cost a compilation per request).
_PREPARED: WeakSet[Select[Any]] = WeakSet()
#: By statement, then by dialect (tests run SQLite and PostgreSQL apps in one process):
#: its plan, or None where it has none (SQLite, a bind the plan cannot fill).
_PLANS: WeakKeyDictionary[Select[Any], dict[str, _Plan | None]] = WeakKeyDictionary()


def prepared(statement: S) -> S:
    """Declare `statement` (built once, at import) as one run on every request."""
    _PREPARED.add(statement)
    return statement


def is_prepared(statement: Select[Any]) -> bool:
    return statement in _PREPARED


def read_rows(
    statement: Select[Any], parameters: dict[str, Any] | None = None
) -> Sequence[Row[Any]]:
    """Every row of `statement` (`row.id`, `row._asdict()`)."""
    plan = _plan(statement, db.engine)
    if plan is not None:
        return plan.run(db.engine, parameters or {})
    with autocommit(db.engine).connect() as connection:
        return connection.execute(statement, parameters).all()


def read_row(statement: Select[Any], parameters: dict[str, Any] | None = None) -> Row[Any] | None:
    """The first row of `statement`, or None."""
    plan = _plan(statement, db.engine)
    if plan is not None:
        found = plan.run(db.engine, parameters or {}, one=True)
        return found[0] if found else None
    with autocommit(db.engine).connect() as connection:
        row: Row[Any] | None = connection.execute(statement, parameters).first()
        return row


def _plan(statement: Select[Any], engine: Engine) -> _Plan | None:
    dialect = engine.dialect
    if engine.dispatch.before_cursor_execute or engine.dispatch.after_cursor_execute:
        return None  # someone watches every statement (tracing): SQLAlchemy runs it
    plans = _PLANS.get(statement)
    if plans is None:
        if statement not in _PREPARED:
            return None
        plans = _PLANS[statement] = {}
    key = f"{dialect.name}+{dialect.driver}"
    if key not in plans:
        plans[key] = _Plan.compile(statement, dialect)
    return plans[key]


@dataclass(frozen=True)
class _Plan:
    """A prepared statement as psycopg runs it: its SQL, how each parameter is converted
    on the way in, and how each column's value is converted on the way out."""

    sql: str
    #: (name, its bind processor or None) for each parameter the SQL names.
    binds: tuple[tuple[str, Processor | None], ...]
    #: A row of the statement's columns from the values fetched, converted where
    #: SQLAlchemy would convert them.
    row: Callable[[Sequence[Any]], Row[Any]]

    @classmethod
    def compile(cls, statement: Select[Any], dialect: Dialect) -> _Plan | None:
        if dialect.name != "postgresql" or dialect.driver != "psycopg":
            return None
        compiled = statement.compile(dialect=dialect)
        binds = []
        for name, bind in compiled.binds.items():
            # Only parameters the caller names, each once in the SQL: a literal or an
            # expanding (`IN`) parameter is SQLAlchemy's to render.
            if not bind.required or bind.expanding or f"%({name})s" not in compiled.string:
                return None
            binds.append((name, bind.type.dialect_impl(dialect).bind_processor(dialect)))
        columns = list(statement.selected_columns)
        names = [str(column.key) for column in columns]
        if len(set(names)) != len(names):
            return None
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        return cls(compiled.string, tuple(binds), _row_type(names, processors))

    def run(self, engine: Engine, parameters: dict[str, Any], one: bool = False) -> list[Row[Any]]:
        """The statement's rows (with `one`, its first row only, if any)."""
        values = {}
        for name, process in self.binds:
            value = parameters[name]
            values[name] = value if process is None else process(value)
        try:
            pooled = engine.raw_connection()
        except engine.dialect.loaded_dbapi.Error as error:  # the server did not answer
            raise _wrapped(engine, None, self.sql, error) from error
        try:
            connection: Any = pooled.driver_connection
            connection.autocommit = True  # no BEGIN: a read needs no transaction
            try:
                with connection.cursor() as cursor:
                    cursor.execute(self.sql, values)
                    found = [cursor.fetchone()] if one else cursor.fetchall()
            except engine.dialect.loaded_dbapi.Error as error:
                raise _wrapped(engine, pooled, self.sql, error) from error
            finally:
                if not connection.closed:
                    connection.autocommit = False
        finally:
            pooled.close()
        return [self.row(row) for row in found if row is not None]


def _row_type(
    names: Sequence[str], processors: Sequence[Processor | None]
) -> Callable[[Sequence[Any]], Row[Any]]:
    """A function from a fetched tuple to a row of `names` (SQLAlchemy's own `Row`, as a
    result makes it: not a tuple, which a view's answer would take for a status and
    headers), each value through its column's processor, if it has one."""
    make = result_tuple(names)
    converting = [(index, process) for index, process in enumerate(processors) if process]
    if not converting:
        return make

    def row(values: Sequence[Any]) -> Row[Any]:
        converted = list(values)
        for index, process in converting:
            converted[index] = process(converted[index])
        return make(converted)

    return row


def _wrapped(engine: Engine, pooled: Any, sql: str, error: Any) -> sa_exc.StatementError:
    """The driver's error as SQLAlchemy raises it (OperationalError, IntegrityError...),
    the pooled connection thrown away if it was the connection that failed."""
    dialect = engine.dialect
    lost = dialect.is_disconnect(error, pooled and pooled.driver_connection, None)
    if lost and pooled is not None:
        pooled.invalidate(error)
    wrapped: sa_exc.StatementError = sa_exc.DBAPIError.instance(
        sql,
        None,
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return wrapped
