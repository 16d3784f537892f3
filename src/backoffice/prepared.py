"""Prepared statements: the few built once and run on nearly every request, run straight
on the driver where that is safe.

A statement declared `prepared()` (the item by id, a page of items, a token's state, an
item's or a delivery's insert) is, on PostgreSQL through psycopg, compiled once per
process and then executed on the pooled driver connection in autocommit: the same SQL,
the same pool (its checkout checks and metrics), the same conversions of values in and
out (the columns' bind and result processors, Python-side column defaults), the same
errors (wrapped as SQLAlchemy wraps them, a dropped connection invalidated), without
SQLAlchemy's per-execution machinery (a `Connection`, its events, the compiled-cache
lookup, the result object), which was about 40% of an item read's database CPU. psycopg
prepares it server-side after a few runs, as it does under SQLAlchemy.

Everything else, every statement on SQLite, and every statement while someone listens
to statement execution (tracing), goes through SQLAlchemy as before: `plan()` is None.
tests/test_prepared.py holds the two ways to the same rows and the same errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from weakref import WeakKeyDictionary, WeakSet

from sqlalchemy import Insert, Row, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.engine.result import result_tuple
from sqlalchemy.sql.base import Executable

from backoffice.database import autocommit
from backoffice.extensions import db

Processor = Callable[[Any], Any]
S = TypeVar("S", bound=Executable)

#: Statements declared `prepared()`: only these get a plan (a statement built per request
#: would cost a compilation per request).
_PREPARED: WeakSet[Executable] = WeakSet()
#: By statement, then by dialect (tests run SQLite and PostgreSQL apps in one process)
#: and the parameters given (an insert's columns): its plan, or None where it has none.
_PLANS: WeakKeyDictionary[Executable, dict[tuple[str, frozenset[str]], Plan | None]]
_PLANS = WeakKeyDictionary()


def prepared(statement: S) -> S:
    """Declare `statement` (built once, at import) as one run on nearly every request."""
    _PREPARED.add(statement)
    return statement


def is_prepared(statement: Executable) -> bool:
    return statement in _PREPARED


def run_alone(statement: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]:
    """Every row of one statement run on its own in autocommit (committed as it runs): on
    the driver when it has a plan, else through SQLAlchemy."""
    engine = db.engine
    found = plan(statement, engine, frozenset(parameters))
    if found is not None:
        return found.run(engine, parameters)
    with autocommit(engine).connect() as connection:
        return connection.execute(statement, parameters).all()


def plan(statement: Executable, engine: Engine, given: frozenset[str]) -> Plan | None:
    """How to run `statement` on the driver with parameters named `given`; None: through
    SQLAlchemy (not prepared, not psycopg, or statements are being watched)."""
    plans = _PLANS.get(statement)
    if plans is None:
        if statement not in _PREPARED:
            return None
        plans = _PLANS[statement] = {}
    if engine.dispatch.before_cursor_execute or engine.dispatch.after_cursor_execute:
        return None  # someone watches every statement (tracing): SQLAlchemy runs it
    dialect = engine.dialect
    key = (f"{dialect.name}+{dialect.driver}", given)
    if key not in plans:
        plans[key] = Plan.compile(statement, dialect, given)
    return plans[key]


@dataclass(frozen=True)
class Plan:
    """A prepared statement as psycopg runs it: its SQL, how each parameter is made (the
    caller's value, or a column default's) and converted, and how rows are made."""

    sql: str
    #: (name, where its value comes from, its bind processor or None), for each parameter
    #: the SQL names: `None` for the caller's value, else the column default to call.
    binds: tuple[tuple[str, Callable[[], Any] | None, Processor | None], ...]
    #: A row of the statement's columns from the values fetched, converted where
    #: SQLAlchemy would convert them.
    row: Callable[[Sequence[Any]], Row[Any]]

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect, given: frozenset[str]) -> Plan | None:
        if dialect.name != "postgresql" or dialect.driver != "psycopg":
            return None
        if isinstance(statement, Insert):
            compiled = statement.compile(dialect=dialect, column_keys=sorted(given))
            defaults = _insert_defaults(compiled)
            if defaults is None:
                return None
            columns = list(statement.exported_columns)
        elif isinstance(statement, Select):
            compiled = statement.compile(dialect=dialect)
            defaults = {}
            columns = list(statement.selected_columns)
        else:
            return None
        binds = []
        for name, bind in compiled.binds.items():
            # Each parameter named once in the SQL; a literal, or an expanding (`IN`)
            # parameter, is SQLAlchemy's to render.
            source = defaults.get(name)
            caller = name in given
            if bind.expanding or f"%({name})s" not in compiled.string or not (caller or source):
                return None
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((name, None if caller else source, process))
        names = [str(column.key) for column in columns]
        if len(set(names)) != len(names):
            return None
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        return cls(compiled.string, tuple(binds), _row_type(names, processors))

    def run(self, engine: Engine, parameters: dict[str, Any], one: bool = False) -> list[Row[Any]]:
        """The statement's rows (with `one`, its first row only, if any), committed as it
        runs (autocommit)."""
        values = {}
        for name, default, process in self.binds:
            value = parameters[name] if default is None else default()
            values[name] = value if process is None else process(value)
        error_type = engine.dialect.loaded_dbapi.Error
        try:
            pooled = engine.raw_connection()
        except error_type as error:  # the server did not answer
            raise _wrapped(engine, None, self.sql, error) from error
        try:
            connection: Any = pooled.driver_connection
            connection.autocommit = True  # no BEGIN, no COMMIT: one statement, on its own
            try:
                with connection.cursor() as cursor:
                    cursor.execute(self.sql, values)
                    found = [cursor.fetchone()] if one else cursor.fetchall()
            except error_type as error:
                raise _wrapped(engine, pooled, self.sql, error) from error
            finally:
                if not connection.closed:
                    connection.autocommit = False
        finally:
            pooled.close()
        return [self.row(row) for row in found if row is not None]


def _insert_defaults(compiled: Any) -> dict[str, Callable[[], Any]] | None:
    """For each column an insert fills from its Python-side default (SQLAlchemy's
    `insert_prefetch`), a function making the value; None if one cannot be made here
    (a SQL expression, a sequence, a default that wants the execution context)."""
    made: dict[str, Callable[[], Any]] = {}
    for column in compiled.insert_prefetch:
        default = column.default
        if default is not None and default.is_scalar:
            made[column.key] = functools.partial(_same, default.arg)
            continue
        # A function of no arguments, which SQLAlchemy wraps to take the context.
        function = getattr(default.arg, "__wrapped__", None) if default is not None else None
        if default is None or not default.is_callable or function is None:
            return None
        made[column.key] = function
    return made


def _same(value: Any) -> Any:
    return value


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
