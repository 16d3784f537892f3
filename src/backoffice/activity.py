"""Activity over time: the figures the console's overview charts, tallied by the workers.

The overview shows the last day hour by hour (webhook outcomes, order transitions, job run
durations, requests by status class) and each queue's rows by status. Computing those when
the page is asked would cost a group-by over up to a million webhook events each time; so
the worker's periodic tally (`backoffice.worker`, every ACTIVITY_INTERVAL_SECONDS) writes
small rows here, and the page reads at most a few hundred of them: its cost does not grow
with the tables it summarises. The figures are as old as the last tick, which the page says.

Three kinds of figure, each declared by the capability or module that owns the numbers and
registered in `create_app()` (`init_activity`), as retention is:

- a `Tally`: a count per hour over one indexed range of a table (`webhooks.service.OUTCOMES`
  counts events finished in that hour by status). Each tick recounts the current hour and
  the one before (work that finished just before the hour turned), and fills hours not yet
  counted, newest first, at most BACKFILL_HOURS a tick: a fresh database, or a worker that
  was down, catches up in steps. An hour counted is never counted again: what finished in
  it does not change (a replay finishes again, later).
- a `Counter`: a process counter's totals (the Prometheus counters `/metrics` serves, e.g.
  requests by status class). Counters are totals since each process started, so the tick
  keeps the totals it saw last and adds the difference to the current hour (a total lower
  than before is a restart: counted from zero).
- a snapshot: every registered work queue's rows by status and its oldest waiting row
  (`work.queue_states`, the same reader `/metrics` uses), replaced at each tick.

One tally at a time: on PostgreSQL the tick takes an advisory lock of its own (as the
pruner does; `housekeeping.alone`) and a worker that does not get it skips that tick, so
two workers never add the same counter difference twice. Rows are kept
`ACTIVITY_RETENTION` (registered with retention like any table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Index, Select, String, Table, UniqueConstraint, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, utcnow
from backoffice.extensions import db
from backoffice.housekeeping import Retention, alone

#: The advisory lock the tally takes on PostgreSQL (the pruner's is another).
LOCK_KEY = 7_340_014
#: Hours not yet counted that one tick counts, per tally.
BACKFILL_HOURS = 24
HOUR = timedelta(hours=1)
#: The label an hour counted carries even when nothing happened in it.
COUNTED = ""
#: The series whose one row says when the last tick ended.
TICK = "tally"
#: How long the hourly rows are kept (the longest chart: a week of orders, by day).
ACTIVITY_RETENTION = timedelta(days=8)


class ActivityFigure(Base):
    """One number: `series` at `hour` (the start of an hour; for totals and snapshots,
    the time they were taken) for `label` (a status, a duration bucket)."""

    __tablename__ = "activity_figures"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    series: Mapped[str] = mapped_column(String(64))
    hour: Mapped[datetime]
    label: Mapped[str] = mapped_column(String(64))
    value: Mapped[float]

    __table_args__ = (
        UniqueConstraint("series", "hour", "label"),
        # Retention deletes by age (`backoffice.housekeeping`).
        Index("ix_activity_figures_hour", "hour"),
    )


FIGURES: Table = ActivityFigure.__table__  # type: ignore[assignment]
#: Every figure goes ACTIVITY_RETENTION after its hour (snapshots are replaced long before).
RETENTION = Retention(FIGURES, FIGURES.c.id, FIGURES.c.hour, ACTIVITY_RETENTION)


@dataclass(frozen=True)
class Tally:
    """Counted per hour: `count(start, end)` gives, by label, what happened in
    `[start, end)`; the overview shows the last `hours` hours."""

    series: str
    count: Callable[[datetime, datetime], Mapping[str, float]]
    hours: int = 24


@dataclass(frozen=True)
class Counter:
    """A process counter: `totals()` gives its totals by label, since processes started."""

    series: str
    totals: Callable[[], Mapping[str, float]]


@dataclass(frozen=True)
class Snapshot:
    """Figures replaced at each tick: `take()` gives them by series, then by label."""

    take: Callable[[], Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class Declared:
    tallies: tuple[Tally, ...]
    counters: tuple[Counter, ...]
    snapshots: tuple[Snapshot, ...]


def init_activity(
    app: Flask,
    tallies: Iterable[Tally],
    counters: Iterable[Counter] = (),
    snapshots: Iterable[Snapshot] = (),
) -> None:
    """Register what the tick records (from `create_app()`)."""
    app.extensions["activity"] = Declared(tuple(tallies), tuple(counters), tuple(snapshots))


def _declared() -> Declared:
    found: Declared = current_app.extensions["activity"]
    return found


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# --- the worker's tick --------------------------------------------------------------


def tally(now: datetime | None = None) -> dict[str, int] | None:
    """Record every declared figure once; hours counted per tally. None when another
    worker is tallying (PostgreSQL's lock)."""
    now = now or utcnow()
    with alone(db.engine, LOCK_KEY) as mine:
        if not mine:
            return None
        declared = _declared()
        counted = {each.series: _count_hours(each, now) for each in declared.tallies}
        for counter in declared.counters:
            _add_difference(counter, now)
        for snapshot in declared.snapshots:
            for series, figures in snapshot.take().items():
                _replace(series, None, now, figures)
        _replace(TICK, None, now, {"at": 0.0})
        db.session.commit()
    return counted


def _count_hours(each: Tally, now: datetime) -> int:
    current = hour_of(now)
    wanted = [current - HOUR * back for back in range(each.hours)]
    done = set(
        db.session.scalars(
            select(FIGURES.c.hour).where(
                FIGURES.c.series == each.series,
                FIGURES.c.label == COUNTED,
                FIGURES.c.hour >= wanted[-1],
            )
        )
    )
    recount = wanted[:2]  # the current hour and the one before: still changing
    missing = [hour for hour in wanted[2:] if hour not in done][:BACKFILL_HOURS]
    for hour in recount + missing:
        figures = {COUNTED: 0.0, **each.count(hour, hour + HOUR)}
        _replace(each.series, hour, hour, figures)
        db.session.commit()  # one short transaction per hour
    return len(recount) + len(missing)


def _add_difference(counter: Counter, now: datetime) -> None:
    """Add what the counter grew by since the last tick to the current hour."""
    totals = dict(counter.totals())
    seen_series = f"{counter.series}:seen"
    seen = _by_label(
        select(FIGURES.c.label, FIGURES.c.value).where(FIGURES.c.series == seen_series)
    )
    hour = hour_of(now)
    so_far = _by_label(
        select(FIGURES.c.label, FIGURES.c.value).where(
            FIGURES.c.series == counter.series, FIGURES.c.hour == hour
        )
    )
    if seen:  # the first tick only starts counting: what came before has no hour
        for label, total in totals.items():
            before = seen.get(label, 0.0)
            so_far[label] = so_far.get(label, 0.0) + (total - before if total >= before else total)
    _replace(counter.series, hour, hour, {COUNTED: 0.0, **so_far})
    _replace(seen_series, None, now, totals)


def _by_label(statement: Select[Any]) -> dict[str, float]:
    return {row[0]: row[1] for row in db.session.execute(statement)}


def _replace(
    series: str, hour: datetime | None, at: datetime, figures: Mapping[str, float]
) -> None:
    """The figures of `series` (at `hour`, or all of them when None) become `figures`."""
    gone = delete(FIGURES).where(FIGURES.c.series == series)
    db.session.execute(gone if hour is None else gone.where(FIGURES.c.hour == hour))
    if figures:
        db.session.execute(
            insert(FIGURES),
            [
                {"series": series, "hour": at, "label": label, "value": float(value)}
                for label, value in figures.items()
            ],
        )


# --- what the overview reads --------------------------------------------------------


@dataclass(frozen=True)
class Hourly:
    """A series hour by hour, oldest first: `values[i][label]` for `hours[i]`; `labels`
    every label seen, in first-seen order."""

    hours: list[datetime]
    labels: list[str]
    values: list[dict[str, float]]

    def totals(self) -> dict[str, float]:
        summed = dict.fromkeys(self.labels, 0.0)
        for row in self.values:
            for label, value in row.items():
                summed[label] += value
        return summed


def hourly(series: str, hours: int, now: datetime | None = None) -> Hourly:
    """The last `hours` hours of `series`, the current one last (hours never counted: empty)."""
    current = hour_of(now or utcnow())
    wanted = [current - HOUR * back for back in reversed(range(hours))]
    found = db.session.execute(
        select(FIGURES.c.hour, FIGURES.c.label, FIGURES.c.value).where(
            FIGURES.c.series == series,
            FIGURES.c.hour >= wanted[0],
            FIGURES.c.label != COUNTED,
        )
    )
    by_hour: dict[datetime, dict[str, float]] = {hour: {} for hour in wanted}
    labels: dict[str, None] = {}
    for hour, label, value in found:
        if hour in by_hour:
            by_hour[hour][label] = value
            labels[label] = None
    return Hourly(wanted, list(labels), [by_hour[hour] for hour in wanted])


def latest(series: str) -> tuple[datetime | None, dict[str, float]]:
    """A snapshot's figures by label, and when they were taken (None: never)."""
    rows = db.session.execute(
        select(FIGURES.c.hour, FIGURES.c.label, FIGURES.c.value).where(FIGURES.c.series == series)
    ).all()
    if not rows:
        return None, {}
    return max(row.hour for row in rows), {row.label: row.value for row in rows}


def latest_snapshots(prefix: str) -> tuple[datetime | None, dict[str, dict[str, float]]]:
    """Every snapshot whose series starts with `prefix`, by series, and when the latest
    was taken (None: never)."""
    rows = db.session.execute(
        select(FIGURES.c.series, FIGURES.c.hour, FIGURES.c.label, FIGURES.c.value).where(
            FIGURES.c.series.startswith(prefix, autoescape=True)
        )
    ).all()
    found: dict[str, dict[str, float]] = {}
    for row in rows:
        found.setdefault(row.series, {})[row.label] = row.value
    return max((row.hour for row in rows), default=None), found


def last_tally() -> datetime | None:
    """When the figures were last recorded (None: never)."""
    return latest(TICK)[0]
