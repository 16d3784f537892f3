"""Retention: what has expired is deleted, in bounded batches, by one pruner at a time.

Each capability declares what it keeps and for how long, a `Retention` beside its
service (e.g. `jobs.service.RETENTION`: finished jobs, `JOB_RETENTION_DAYS` after they
finished), and `create_app()` registers them (`init_retention`): the tables pruned, in the
order a run visits them, are the tables registered. A work queue (`backoffice.work`)
whose table has no retention fails there, at start-up: its finished rows would pile up
unseen. A retention of 0 days keeps those rows forever; waiting or running work is never
due.

**Bounded batches.** Each batch deletes at most `PRUNE_BATCH_SIZE` rows, picked by a
`SELECT ... LIMIT n` on an index of what is due, in one statement and its own short
transaction, so no lock is held for long and a big backlog drains in steps while
requests are served. On PostgreSQL the pick takes `FOR UPDATE SKIP LOCKED`: two pruners
never wait on each other's rows (each deletes a row once), and a row a request holds
right now (an idempotency claim being completed, an event being replayed) is left for
the next run. SQLite runs one writer at a time, so its batches never overlap.

**One pruner at a time.** The workers' periodic loop (`backoffice.worker`) calls
`prune()` every `PRUNE_INTERVAL_SECONDS` in every worker; on PostgreSQL a session-level
advisory lock lets one of them prune and the others skip that tick. Chosen over Celery
beat (one more process to deploy, and the embedded broker cannot run it) and over a
Redis lock or a lease row (Redis is optional here, and a lease needs an expiry to tune):
the lock needs no table and no setting, and PostgreSQL releases it by itself when the
holder's connection ends, so a worker that dies mid-prune never blocks the next one.
SQLite has no such lock and needs none: it is one machine, and its writers are serialised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Table,
    and_,
    any_,
    delete,
    func,
    select,
    true,
)
from sqlalchemy.engine import Engine

from backoffice import metrics, work
from backoffice.database import autocommit, utcnow
from backoffice.extensions import db

#: The advisory lock's key on PostgreSQL: any constant no other code uses for a lock.
LOCK_KEY = 7_340_013


def _always(_: datetime) -> ColumnElement[bool]:
    return true()


@dataclass(frozen=True)
class Rule:
    """One kind of row retention removes: from `table`, once `keep` has passed since `due`."""

    table: Table
    #: The primary key the batches select and delete by.
    key: ColumnElement[Any]
    #: When the row's retention starts (its expiry, or when the work finished).
    due: ColumnElement[datetime]
    keep: timedelta
    #: Which rows the rule is about (a status), given the time of the run.
    where: Callable[[datetime], ColumnElement[bool]] = _always

    @property
    def name(self) -> str:
        return self.table.name

    def expired(self, now: datetime) -> ColumnElement[bool]:
        return and_(self.due < now - self.keep, self.where(now))


@dataclass(frozen=True)
class Retention:
    """What a capability keeps and for how long: rows of `table` go once `keep` has
    passed since `due`, among those `where` picks (and, if `statuses` are named, only in
    one of them). Declared beside the capability's service, registered in `create_app()`.
    """

    table: Table
    #: The primary key the batches select and delete by.
    key: ColumnElement[Any]
    #: When the row's retention starts (its expiry, or when the work finished).
    due: ColumnElement[datetime]
    #: How long after `due`: a fixed time, or the setting holding a number of days (0:
    #: forever).
    keep: timedelta | str = timedelta(0)
    #: Which rows the retention is about, given the time of the run.
    where: Callable[[datetime], ColumnElement[bool]] = _always
    #: Only rows in one of these states (`table.c.status`), one rule each, so that each
    #: batch (and each oldest-row lookup) is one range of a `(status, due)` index.
    statuses: tuple[str, ...] = ()

    def rules(self, config: Mapping[str, Any]) -> list[Rule]:
        """This retention as `config` sets it: no rule at all for a retention of 0 days."""
        keep = self.keep if isinstance(self.keep, timedelta) else _days(config, self.keep)
        if keep is None:
            return []
        if not self.statuses:
            return [Rule(self.table, self.key, self.due, keep, self.where)]
        return [
            Rule(self.table, self.key, self.due, keep, _in_status(self.table, status, self.where))
            for status in self.statuses
        ]


def _in_status(
    table: Table, status: str, where: Callable[[datetime], ColumnElement[bool]]
) -> Callable[[datetime], ColumnElement[bool]]:
    return lambda now: and_(where(now), table.c.status == status)


def _days(config: Mapping[str, Any], setting: str) -> timedelta | None:
    days: int = config[setting]
    return timedelta(days=days) if days else None


def init_retention(app: Flask, declared: Iterable[Retention]) -> None:
    """Register what retention removes (from `create_app()`, once the work queues are
    registered). A queue whose table no retention prunes, or a retention whose setting is
    not a setting, fails here rather than leave rows that grow forever."""
    declared = tuple(declared)
    for retention in declared:
        if isinstance(retention.keep, str) and retention.keep not in app.config:
            raise RuntimeError(f"retention of {retention.table.name}: no setting {retention.keep}")
    pruned = {retention.table.name for retention in declared}
    queues = {entry.queue.table.name for entry in work.registered(app).values()}
    if queues - pruned:
        raise RuntimeError(f"no retention for the work queues' tables {sorted(queues - pruned)}")
    app.extensions["retention"] = declared


def retentions(app: Flask) -> tuple[Retention, ...]:
    """What `init_retention` registered, in order."""
    found: tuple[Retention, ...] = app.extensions["retention"]
    return found


def tables(app: Flask) -> tuple[str, ...]:
    """Every table retention prunes, in the order a run visits them (registered order)."""
    return tuple(dict.fromkeys(retention.table.name for retention in retentions(app)))


def rules(app: Flask) -> list[Rule]:
    """What retention removes under `app`'s configuration; a retention of 0 days adds no rule."""
    return [rule for retention in retentions(app) for rule in retention.rules(app.config)]


def batch_statement(rule: Rule, now: datetime, size: int, dialect: str) -> Delete:
    """One batch: delete up to `size` rows that are due, picked by primary key.

    On PostgreSQL the keys are gathered first (`= ANY(ARRAY(...))`, run once) so that the
    delete reaches each row through the primary key: with `IN (subquery)` the planner
    hash-joins the whole table, reading every row of it for every batch.
    """
    # Oldest first: the order the index on `due` gives, so the pick reads that index even
    # when most of the table is due (a backlog), rather than scanning the heap from its
    # start past the rows earlier batches deleted.
    due = select(rule.key).where(rule.expired(now)).order_by(rule.due).limit(size)
    if dialect == "postgresql":
        locked = due.with_for_update(skip_locked=True).scalar_subquery()
        return delete(rule.table).where(rule.key == any_(func.array(locked)))
    return delete(rule.table).where(rule.key.in_(due))  # SQLite: one writer at a time


def oldest_statement(rule: Rule, now: datetime) -> Select[datetime]:
    """The `due` time of the most overdue row (NULL when none is due)."""
    return select(func.min(rule.due)).where(rule.expired(now))


def delete_batch(engine: Engine, rule: Rule, now: datetime, size: int) -> int:
    """Delete up to `size` rows `rule` says are due, in one short transaction; how many."""
    with engine.begin() as connection:
        deleted = connection.execute(batch_statement(rule, now, size, engine.dialect.name))
    return int(deleted.rowcount)


def delete_expired(now: datetime | None = None, *, batch_size: int | None = None) -> dict[str, int]:
    """Delete every row that is due, batch after batch; rows deleted per table.

    Safe beside another pruner (each row is deleted once), but not exclusive: `prune()`
    is what workers and `flask prune` call.
    """
    now = now or utcnow()
    size = batch_size or current_app.config["PRUNE_BATCH_SIZE"]
    deleted: Counter[str] = Counter(dict.fromkeys(tables(current_app), 0))
    for rule in rules(current_app):
        while True:
            count = delete_batch(db.engine, rule, now, size)
            deleted[rule.name] += count
            if count < size:
                break
    return dict(deleted)


def prune(now: datetime | None = None, *, batch_size: int | None = None) -> dict[str, int] | None:
    """Run retention once, unless another pruner is running (then None): rows deleted per
    table."""
    with alone(db.engine) as mine:
        if not mine:
            return None
        deleted = delete_expired(now, batch_size=batch_size)
    metrics.count_pruned(deleted)
    return deleted


def count_expired(now: datetime | None = None) -> dict[str, int]:
    """How many rows a prune at `now` would delete, per table (`flask prune --dry-run`)."""
    now = now or utcnow()
    due: Counter[str] = Counter(dict.fromkeys(tables(current_app), 0))
    with db.engine.connect() as connection:
        for rule in rules(current_app):
            query = select(func.count()).select_from(rule.table).where(rule.expired(now))
            due[rule.name] += connection.scalar(query) or 0
    return dict(due)


def overdue_ages(now: datetime | None = None) -> dict[str, float | None]:
    """Per table, how long (seconds) the row retention should have removed longest ago has
    been due: about the prune interval while pruning keeps up, growing when it is stuck.
    None when no row is due (or the table is kept forever).

    Each lookup is the first entry of an index range (`rules()` keeps one status per rule),
    cheap enough for every metrics scrape.
    """
    now = now or utcnow()
    ages: dict[str, float | None] = dict.fromkeys(tables(current_app))
    with db.engine.connect() as connection:
        for rule in rules(current_app):
            oldest = connection.scalar(oldest_statement(rule, now))
            if oldest is None:
                continue
            age = (now - rule.keep - oldest).total_seconds()
            previous = ages[rule.name]
            ages[rule.name] = age if previous is None else max(previous, age)
    return ages


@contextmanager
def alone(engine: Engine, key: int = LOCK_KEY) -> Iterator[bool]:
    """True while this process holds the lock `key` (PostgreSQL; the pruner's by default),
    False if another one does; always True elsewhere. The lock lives on a connection of
    its own and ends with it."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with autocommit(engine).connect() as connection:
        held = bool(connection.scalar(select(func.pg_try_advisory_lock(key))))
        try:
            yield held
        finally:
            if held:
                connection.scalar(select(func.pg_advisory_unlock(key)))
