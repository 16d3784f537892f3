"""Retention: what has expired is deleted, in bounded batches, by one pruner at a time.

Every rule retention follows is in `rules()`, in one place, so an operator reads here
what the service keeps and for how long:

- idempotency records past `expires_at`: only answered ones, or claims left in flight
  by a request that died (older than the idempotency layer's `ABANDONED_AFTER`); a live
  request's claim is never taken from under it;
- revoked tokens past the token's own expiry;
- finished jobs (succeeded, failed, cancelled) and their results, `JOB_RETENTION_DAYS`
  after they finished;
- processed and ignored webhook events `WEBHOOK_RETENTION_DAYS` after they finished,
  failed ones after `WEBHOOK_FAILED_RETENTION_DAYS` (a replay makes one wait again, so
  it is no longer due). Waiting or running work is never due.

A retention of 0 days keeps those rows forever.

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Table,
    and_,
    any_,
    delete,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Engine

from backoffice import metrics
from backoffice.auth.models import RevokedToken
from backoffice.database import autocommit, utcnow
from backoffice.extensions import db
from backoffice.idempotency.models import IdempotencyRecord
from backoffice.idempotency.service import ABANDONED_AFTER
from backoffice.jobs.models import Job, JobStatus
from backoffice.webhooks.models import EventStatus, WebhookEvent

#: The advisory lock's key on PostgreSQL: any constant no other code uses for a lock.
LOCK_KEY = 7_340_013

#: Every table retention prunes, in the order a run visits them.
TABLES = ("idempotency_records", "revoked_tokens", "jobs", "webhook_events")


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


RECORDS: Table = IdempotencyRecord.__table__  # type: ignore[assignment]
REVOKED: Table = RevokedToken.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]
EVENTS: Table = WebhookEvent.__table__  # type: ignore[assignment]


def _answered_or_abandoned(now: datetime) -> ColumnElement[bool]:
    return or_(RECORDS.c.status_code.is_not(None), RECORDS.c.created_at < now - ABANDONED_AFTER)


def _status(column: ColumnElement[str], status: str) -> Callable[[datetime], ColumnElement[bool]]:
    return lambda _: column == status


def _days(config: Mapping[str, Any], setting: str) -> timedelta | None:
    days: int = config[setting]
    return timedelta(days=days) if days else None


def rules(config: Mapping[str, Any]) -> list[Rule]:
    """What retention removes under `config`; a retention of 0 days adds no rule.

    One rule per status, so that each batch (and each oldest-row lookup) is a range scan
    of one `(status, finished_at)` index range.
    """
    found = [
        Rule(RECORDS, RECORDS.c.id, RECORDS.c.expires_at, timedelta(0), _answered_or_abandoned),
        Rule(REVOKED, REVOKED.c.jti, REVOKED.c.expires_at, timedelta(0)),
    ]
    finished = (
        (JOBS, "JOB_RETENTION_DAYS", (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)),
        (EVENTS, "WEBHOOK_RETENTION_DAYS", (EventStatus.PROCESSED, EventStatus.IGNORED)),
        (EVENTS, "WEBHOOK_FAILED_RETENTION_DAYS", (EventStatus.FAILED,)),
    )
    for table, setting, statuses in finished:
        keep = _days(config, setting)
        if keep is not None:
            found += [
                Rule(table, table.c.id, table.c.finished_at, keep, _status(table.c.status, status))
                for status in statuses
            ]
    return found


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
    deleted: Counter[str] = Counter(dict.fromkeys(TABLES, 0))
    for rule in rules(current_app.config):
        while True:
            count = delete_batch(db.engine, rule, now, size)
            deleted[rule.name] += count
            if count < size:
                break
    return dict(deleted)


def prune(now: datetime | None = None, *, batch_size: int | None = None) -> dict[str, int] | None:
    """Run retention once, unless another pruner is running (then None): rows deleted per
    table."""
    with _alone(db.engine) as alone:
        if not alone:
            return None
        deleted = delete_expired(now, batch_size=batch_size)
    metrics.count_pruned(deleted)
    return deleted


def count_expired(now: datetime | None = None) -> dict[str, int]:
    """How many rows a prune at `now` would delete, per table (`flask prune --dry-run`)."""
    now = now or utcnow()
    due: Counter[str] = Counter(dict.fromkeys(TABLES, 0))
    with db.engine.connect() as connection:
        for rule in rules(current_app.config):
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
    ages: dict[str, float | None] = dict.fromkeys(TABLES)
    with db.engine.connect() as connection:
        for rule in rules(current_app.config):
            oldest = connection.scalar(oldest_statement(rule, now))
            if oldest is None:
                continue
            age = (now - rule.keep - oldest).total_seconds()
            previous = ages[rule.name]
            ages[rule.name] = age if previous is None else max(previous, age)
    return ages


@contextmanager
def _alone(engine: Engine) -> Iterator[bool]:
    """True while this process holds the pruner's lock (PostgreSQL), False if another one
    does; always True elsewhere. The lock lives on a connection of its own and ends with it."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with autocommit(engine).connect() as connection:
        held = bool(connection.scalar(select(func.pg_try_advisory_lock(LOCK_KEY))))
        try:
            yield held
        finally:
            if held:
                connection.scalar(select(func.pg_advisory_unlock(LOCK_KEY)))
