"""Leased background work: one engine for every queue (jobs, webhook events, ...).

The row is the truth; a queue message only wakes a worker. Every queue follows the
same life:

- **send**: after the row is committed, a message goes to the broker and the row is
  stamped `enqueued_at` (the outbox pattern; a broker that is down loses nothing). A
  request hands the row to its process's `Sender`, which sends in batches beside the
  request path; the relay and admin requeues send at once (`send`).
- **claim**: one atomic UPDATE takes a waiting row, or a running one whose lease ran
  out, to `running` for attempt `attempts + 1` under a lease of the queue's length.
- **renew**: a long run extends its lease (out of band, on its own connection).
- **record**: an outcome is written only if the row is still `running` under *this*
  attempt: a newer claim fences a presumed-dead attempt out, so an outcome is recorded
  exactly once. A run's own writes commit in the same transaction as its outcome.
- **relay**: every worker periodically sends again what is not in the queue: rows
  never sent after a grace period, rows sent but never claimed after
  RESEND_UNCLAIMED_SECONDS while the broker's queue is empty (the worker that took the
  message died holding it, or the message was lost) and after several leases whatever
  the queue holds, and rows running past their lease (the worker died).

A capability declares its `WorkQueue` (table, task name, its own status words, the
setting that holds its lease) and registers what performing one row means in
`create_app()`; the engine does the rest, including the Celery task.
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from celery import Celery, Task
from flask import Flask, current_app
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Row, Table, and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import String

from backoffice import metrics
from backoffice.config import ConfigError
from backoffice.database import autocommit, utcnow
from backoffice.extensions import db
from backoffice.transactions import after_commit, one_transaction

log = structlog.get_logger(__name__)

#: Accepted work younger than this is left to the request that accepted it.
RELAY_GRACE = timedelta(seconds=2)
#: The most rows one relay tick sends per queue: a long broker outage drains in steps.
RELAY_BATCH = 500


class LeasedWorkMixin:
    """The columns the engine drives, the same on every queue's table."""

    status: Mapped[str] = mapped_column(String(16))
    #: The number of claims so far, and the fencing token of the latest one.
    attempts: Mapped[int] = mapped_column(default=0)
    enqueued_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Rejected(Exception):  # an outcome, not a bug
    """This work can never succeed (e.g. an event about an order that does not exist):
    fail it now with this message instead of retrying. The message is recorded as is."""


class LeaseLost(Exception):  # a condition, not a bug
    """This attempt no longer owns the row: a newer claim took it over."""


def error_with_message(error: Exception) -> str:
    """The error's class and message; only the class for a database error, whose message
    may quote the values it was given (the worker's log has the rest)."""
    if isinstance(error, SQLAlchemyError):
        return f"{type(error).__name__}: a database error (see the worker's log)"
    return f"{type(error).__name__}: {error}"[:1000]


@dataclass(frozen=True)
class WorkQueue:
    """What differs between queues. The rest is the engine's."""

    name: str
    table: Table
    task_name: str
    #: The capability's own words for "waiting to be claimed" and "claimed, running".
    waiting: str
    running: str
    failed: str
    #: The setting (seconds) a claim's lease lasts.
    lease_setting: str
    #: The column a failure's text goes to.
    error_column: str
    #: Attempts before a failure is final.
    max_attempts: int
    #: Errors worth another attempt; anything else fails the row at once.
    retry_on: tuple[type[Exception], ...] = (Exception,)
    #: A row sent but not claimed after this many leases is sent again even while the
    #: broker's queue holds messages (a lost message under a standing backlog). Long,
    #: because a busy queue also leaves rows unclaimed, and each resend duplicates; with
    #: the queue empty, RESEND_UNCLAIMED_SECONDS is the bound (`broker_drained`).
    resend_after_leases: int = 10
    #: The most rows one message from the `Sender` names: above 1, rows accepted
    #: together share a message (`many_task_name`), run one after another by the worker
    #: that takes it. For short runs (webhook events); long ones (jobs) keep 1, so that
    #: each can go to another worker.
    rows_per_message: int = 1
    #: Columns a claim hands to the performer.
    claim_columns: tuple[str, ...] = ()
    #: Extra values a claim writes (e.g. progress reset).
    claim_values: Mapping[str, Any] = field(default_factory=dict)
    #: What a failure records in `error_column`.
    error_text: Callable[[Exception], str] = error_with_message

    def lease(self) -> timedelta:
        return timedelta(seconds=current_app.config[self.lease_setting])

    @property
    def many_task_name(self) -> str:
        """The task of a message naming several rows (`rows_per_message`)."""
        return f"{self.task_name}.many"


@dataclass(frozen=True)
class Outcome:
    """How a run ended: the status to record and the values that go with it."""

    status: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """One claim of one row: what the performer reads, and how it keeps its lease."""

    queue: WorkQueue
    row_id: uuid.UUID
    number: int
    row: Row[Any]

    def renew(self, **values: Any) -> None:
        """Extend the lease (writing `values` too, e.g. progress); LeaseLost if fenced out.

        On its own connection: a renewal never commits the run's unfinished writes.
        """
        if not renew(self.queue, self.row_id, self.number, **values):
            raise LeaseLost(f"{self.queue.name} {self.row_id}: attempt {self.number} lost")


Perform = Callable[[Attempt], Outcome]


@dataclass(frozen=True)
class Registered:
    queue: WorkQueue
    perform: Perform


def register(app: Flask, queue: WorkQueue, perform: Perform) -> None:
    """Declare a queue and what performing one of its rows means (from `create_app()`).

    The queue's lease setting is checked here, as it is registered, so no list elsewhere
    names the queues' settings: one that is not a setting, or not a positive number of
    seconds, stops the start.
    """
    _check_lease(queue, app.config)
    app.extensions.setdefault("work", {})[queue.name] = Registered(queue, perform)


def _check_lease(queue: WorkQueue, config: Mapping[str, Any]) -> None:
    setting = queue.lease_setting
    if setting not in config:
        raise RuntimeError(
            f"queue {queue.name!r}: its lease setting {setting} is not a setting "
            "(declare it in config.Config)"
        )
    seconds = config[setting]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ConfigError(f"{setting} must be a positive number of seconds")


def registered(app: Flask) -> dict[str, Registered]:
    queues: dict[str, Registered] = app.extensions.get("work", {})
    return queues


# --- the web side -----------------------------------------------------------------


def send(queue: WorkQueue, row_id: uuid.UUID) -> bool:
    """Send the row's message and stamp its `enqueued_at`; False (nothing lost) when the
    broker does not answer: the relay sends it later."""
    celery_app: Celery = current_app.extensions["celery"]
    try:
        celery_app.send_task(queue.task_name, args=[str(row_id)], headers=_log_context())
    except Exception as error:
        # Not only KombuError and OSError: the embedded broker (kombu's SQLAlchemy
        # transport) raised IntegrityError when two processes declared its queue at once.
        # The row is committed; failing the request now would answer 500 for a stored
        # event.
        log.warning("enqueue_failed", queue=queue.name, id=str(row_id), error=type(error).__name__)
        return False
    table = queue.table
    # One statement on its own: nothing else to commit with it, so no BEGIN and COMMIT.
    with autocommit(db.engine).connect() as connection:
        connection.execute(update(table).where(table.c.id == row_id).values(enqueued_at=utcnow()))
    return True


#: The message header that carries the id of the request that queued the work, so the
#: run's log lines carry it too (see `queue.FlaskTask`).
REQUEST_ID_HEADER = "request_id"


def _log_context() -> dict[str, str]:
    """What the run's log lines should share with this one's: the request id, if any (the
    relay's sends have none). Trace context travels on its own (OpenTelemetry's Celery
    instrumentation), when tracing is on."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return {REQUEST_ID_HEADER: request_id} if request_id else {}


def send_after_commit(queue: WorkQueue, row_id: uuid.UUID) -> None:
    """Send the row (`send_soon`) once the transaction that writes it has committed."""
    after_commit(lambda: send_soon(queue, row_id))


def send_soon(queue: WorkQueue, row_id: uuid.UUID) -> None:
    """Hand a committed row to this process's `Sender`, which sends it within moments in
    a batch with others; the request does not wait for the broker. If the process dies
    first, the row is unstamped and the relay sends it after RELAY_GRACE."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    sender(app).put(queue, row_id, _log_context())


#: The most rows one batch of the `Sender` publishes and stamps.
SEND_BATCH = 500
#: How long, at exit, the `Sender` may take to send what it still holds.
SEND_AT_EXIT = timedelta(seconds=2)


@dataclass(frozen=True)
class _Accepted:
    queue: WorkQueue
    row_id: uuid.UUID
    headers: dict[str, str]
    #: The accepting request's context variables (its trace span, when tracing is on),
    #: in which the row's message is published: the run continues the request's trace.
    context: contextvars.Context


class Sender:
    """Sends accepted rows' messages from a thread of its own, in batches.

    Sending on the request path cost a delivery a Celery publish (a Redis client object
    built per message, one round trip) and an UPDATE stamping `enqueued_at` (another).
    Here a request only queues the row's id in memory; the thread takes whatever has
    queued meanwhile (one row when the service is quiet, hundreds under load), publishes
    it through one producer in one pipeline (kombu's `Producer.batch()`: one round trip
    on Redis; other brokers publish each message as before), then stamps the batch in one
    `UPDATE ... WHERE id IN (...)`. A batch the broker refuses is left unstamped, and a
    process that dies drops what it held: either way the rows are committed and
    unstamped, and the relay sends them after RELAY_GRACE (`relay`). A message sent
    twice costs a claim that finds nothing to do (`claim`).

    One per app and process (`sender`), its thread started by the first row; `background`
    False runs no thread: the caller sends with `send_pending()` (the profile does, so
    its call counts include the sending).
    """

    def __init__(self, app: Flask, background: bool = True) -> None:
        self.app = app
        self.background = background
        self._pending: collections.deque[_Accepted] = collections.deque()
        self._changed = threading.Condition()
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def put(self, queue: WorkQueue, row_id: uuid.UUID, headers: dict[str, str]) -> None:
        with self._changed:
            self._pending.append(_Accepted(queue, row_id, headers, contextvars.copy_context()))
            self._changed.notify_all()
            if self.background and self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="backoffice-sender", daemon=True
                )
                self._thread.start()
                atexit.register(self.wait_sent, SEND_AT_EXIT.total_seconds())

    def stop(self, timeout: float) -> None:
        """Send what is pending, then end the thread (an app being closed: the tests'
        apps, the profile's). A row put afterwards waits for the relay."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        atexit.unregister(self.wait_sent)

    def wait_sent(self, timeout: float) -> bool:
        """Wait until every row put so far has been sent (or refused by the broker);
        False if some are still pending after `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._pending and not self._in_flight, timeout
            )

    def send_pending(self) -> int:
        """Send what is pending now, in this thread; how many rows were sent."""
        batch = self._take(block=False)
        try:
            return self._send(batch) if batch else 0
        finally:
            self._done(batch)

    def _take(self, block: bool) -> list[_Accepted]:
        with self._changed:
            if block:
                self._changed.wait_for(lambda: bool(self._pending) or self._stopping)
            count = min(len(self._pending), SEND_BATCH)
            batch = [self._pending.popleft() for _ in range(count)]
            self._in_flight += len(batch)
            return batch

    def _done(self, batch: list[_Accepted]) -> None:
        with self._changed:
            self._in_flight -= len(batch)
            self._changed.notify_all()

    def _run(self) -> None:
        while True:
            batch = self._take(block=True)
            if not batch:
                return  # stopping, and nothing left to send
            try:
                self._send(batch)
            except Exception:  # the thread must outlive any one bad batch
                log.exception("send_batch_crashed", rows=len(batch))
            finally:
                self._done(batch)

    def _send(self, batch: list[_Accepted]) -> int:
        with self.app.app_context():
            celery_app: Celery = self.app.extensions["celery"]
            try:
                with celery_app.producer_or_acquire() as producer, producer.batch():
                    for name, args, headers, context in _messages(batch):
                        context.run(
                            celery_app.send_task,
                            name,
                            args=args,
                            headers=headers,
                            producer=producer,
                        )
            except Exception as error:
                # Not only KombuError and OSError: the embedded broker (kombu's SQLAlchemy
                # transport) raised IntegrityError when two processes declared its queue
                # at once. The rows are committed; the relay sends them.
                log.warning("enqueue_failed", rows=len(batch), error=type(error).__name__)
                return 0
            try:
                _stamp_sent(batch)
            except SQLAlchemyError as error:
                # Sent but unstamped: the relay sends them again, each a claim with
                # nothing to do.
                log.warning("enqueue_stamp_failed", rows=len(batch), error=type(error).__name__)
        return len(batch)


Message = tuple[str, list[Any], dict[str, str], contextvars.Context]


def _messages(batch: Sequence[_Accepted]) -> Iterator[Message]:
    """The messages that send `batch`: (task name, args, headers, the context to publish
    in). A row of a queue with `rows_per_message` 1 gets a message of its own, as `send`
    sends it; others share one per `rows_per_message` rows, each row with the request id
    that accepted it (the run's trace continues the first row's request)."""
    shared: dict[str, list[_Accepted]] = {}
    for accepted in batch:
        queue = accepted.queue
        if queue.rows_per_message == 1:
            yield queue.task_name, [str(accepted.row_id)], accepted.headers, accepted.context
            continue
        rows = shared.setdefault(queue.name, [])
        rows.append(accepted)
        if len(rows) == queue.rows_per_message:
            yield _shared_message(rows)
            rows.clear()
    for rows in shared.values():
        if rows:
            yield _shared_message(rows)


def _shared_message(rows: Sequence[_Accepted]) -> Message:
    named = [[str(row.row_id), row.headers.get(REQUEST_ID_HEADER)] for row in rows]
    return rows[0].queue.many_task_name, [named], {}, rows[0].context


def _stamp_sent(batch: Sequence[_Accepted]) -> None:
    """`enqueued_at` on every row of the batch, one autocommit UPDATE per queue. A row
    stamped meanwhile (a retry's due time, written by a worker that already ran it) keeps
    its stamp."""
    by_queue: dict[str, list[uuid.UUID]] = {}
    tables: dict[str, Table] = {}
    for accepted in batch:
        by_queue.setdefault(accepted.queue.name, []).append(accepted.row_id)
        tables[accepted.queue.name] = accepted.queue.table
    now = utcnow()
    with autocommit(db.engine).connect() as connection:
        for name, row_ids in by_queue.items():
            table = tables[name]
            connection.execute(
                update(table)
                .where(table.c.id.in_(row_ids), table.c.enqueued_at.is_(None))
                .values(enqueued_at=now)
            )


def stop_sender(app: Flask, timeout: float = SEND_AT_EXIT.total_seconds()) -> None:
    """Stop this process's `Sender` for `app`, if it has one, after it sent what it holds."""
    found = app.extensions.get("work_senders", {}).get(os.getpid())
    if found is not None:
        found.stop(timeout)


def install_sender(app: Flask, installed: Sender) -> Sender:
    """Make `installed` this process's `Sender` for `app`: for the tests and the profile,
    one without a thread, which sends when they say (`Sender.send_pending`)."""
    app.extensions.setdefault("work_senders", {})[os.getpid()] = installed
    return installed


def sender(app: Flask) -> Sender:
    """This process's `Sender` for `app` (a forked child makes its own: threads do not
    survive a fork)."""
    senders: dict[int, Sender] = app.extensions.setdefault("work_senders", {})
    pid = os.getpid()
    found = senders.get(pid)
    if found is None:
        found = senders.setdefault(pid, Sender(app))
    return found


def requeue(queue: WorkQueue, row_id: uuid.UUID, **values: Any) -> bool:
    """Make a row wait to be run again, whatever happened to it before (fencing out a
    run in progress), and send it. False when there is no such row."""
    table = queue.table
    done = db.session.execute(
        update(table)
        .where(table.c.id == row_id)
        .values(
            status=queue.waiting, enqueued_at=None, lease_until=None, finished_at=None, **values
        )
    )
    db.session.commit()
    if not done.rowcount:  # type: ignore[attr-defined]
        return False
    send(queue, row_id)
    return True


def requeue_many(
    queue: WorkQueue, row_ids: Sequence[uuid.UUID], only: str, **values: Any
) -> list[uuid.UUID]:
    """Make the rows among `row_ids` still in status `only` wait to be run again (in one
    UPDATE, one commit), then send each; the ids that were requeued. A row whose status
    changed since its id was read is left as it is."""
    table = queue.table
    done = db.session.execute(
        update(table)
        .where(table.c.id.in_(row_ids), table.c.status == only)
        .values(
            status=queue.waiting, enqueued_at=None, lease_until=None, finished_at=None, **values
        )
        .returning(table.c.id)
    )
    requeued = list(done.scalars())
    db.session.commit()
    for row_id in requeued:
        send(queue, row_id)
    return requeued


# --- the worker side ----------------------------------------------------------------


def _fenced(queue: WorkQueue, row_id: uuid.UUID, attempt: int) -> ColumnElement[bool]:
    table = queue.table
    return and_(table.c.id == row_id, table.c.attempts == attempt, table.c.status == queue.running)


def claim(queue: WorkQueue, row_id: uuid.UUID) -> Attempt | None:
    """Take the row for a new attempt: waiting, or running under a lease that ran out."""
    table, now = queue.table, utcnow()
    claimed = db.session.execute(
        update(table)
        .where(
            table.c.id == row_id,
            or_(
                table.c.status == queue.waiting,
                and_(table.c.status == queue.running, table.c.lease_until < now),
            ),
        )
        .values(
            status=queue.running,
            attempts=table.c.attempts + 1,
            started_at=now,
            lease_until=now + queue.lease(),
            **queue.claim_values,
        )
        .returning(table.c.attempts, *(table.c[name] for name in queue.claim_columns))
    ).first()
    db.session.commit()
    if claimed is None:
        return None  # finished, cancelled, or running elsewhere under a live lease
    return Attempt(queue, row_id, claimed.attempts, claimed)


def renew(queue: WorkQueue, row_id: uuid.UUID, attempt: int, **values: Any) -> bool:
    """Extend this attempt's lease; False when a newer attempt owns the row."""
    with autocommit(db.engine).connect() as connection:
        done = connection.execute(
            update(queue.table)
            .where(_fenced(queue, row_id, attempt))
            .values(lease_until=utcnow() + queue.lease(), **values)
        )
    return bool(done.rowcount)


def record(queue: WorkQueue, row_id: uuid.UUID, attempt: int, **values: Any) -> bool:
    """Write for this attempt only, with whatever the run wrote, in one commit; False
    (and the run's writes rolled back) when a newer attempt owns the row."""
    done = db.session.execute(
        update(queue.table).where(_fenced(queue, row_id, attempt)).values(**values)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        db.session.rollback()
        return False
    db.session.commit()
    return True


def process(queue_name: str, row_id: uuid.UUID) -> bool:
    """Claim the row, perform it, record the outcome once. True when it should be retried."""
    queue, perform = _lookup(queue_name)
    attempt = claim(queue, row_id)
    if attempt is None:
        return False
    started = time.perf_counter()
    try:
        with one_transaction():
            outcome = perform(attempt)
    except LeaseLost:
        log.warning("lease_lost", queue=queue.name, id=str(row_id), attempt=attempt.number)
        metrics.observe_work_run(queue.name, "lease_lost", time.perf_counter() - started)
        return False
    except Exception as error:
        retry = _failed(attempt, error)
        outcome_name = "retrying" if retry else str(queue.failed)
        metrics.observe_work_run(queue.name, outcome_name, time.perf_counter() - started)
        return retry
    seconds = time.perf_counter() - started
    metrics.observe_work_run(queue.name, str(outcome.status), seconds)
    log.info(
        "work_done",
        queue=queue.name,
        id=str(row_id),
        attempt=attempt.number,
        status=str(outcome.status),
        duration_ms=round(seconds * 1000, 2),
    )
    record(
        queue,
        row_id,
        attempt.number,
        status=outcome.status,
        finished_at=utcnow(),
        lease_until=None,
        **outcome.values,
    )
    return False


def _failed(attempt: Attempt, error: Exception) -> bool:
    """Record a failed run: back to waiting for a retry, or failed for good."""
    queue = attempt.queue
    rejected = isinstance(error, Rejected)
    retry = (
        not rejected and isinstance(error, queue.retry_on) and attempt.number < queue.max_attempts
    )
    log.warning(
        "work_failed",
        queue=queue.name,
        id=str(attempt.row_id),
        attempt=attempt.number,
        error=type(error).__name__,
        retry=retry,
        exc_info=not isinstance(error, SQLAlchemyError | Rejected),
    )
    now = utcnow()
    final = {} if retry else {"status": queue.failed, "finished_at": now}
    # A retry counts as sent when it is due, so the relay does not send it before its
    # backoff is over: the attempt number is never below Celery's retries + 1, so this is
    # never before the message's own countdown ends.
    due = now + timedelta(seconds=retry_delay(attempt.number))
    record(
        queue,
        attempt.row_id,
        attempt.number,
        **{"status": queue.waiting, "enqueued_at": due, **final},
        lease_until=None,
        **{queue.error_column: str(error)[:1000] if rejected else queue.error_text(error)},
    )
    return retry


@dataclass(frozen=True)
class QueueState:
    """A queue's rows by status (its waiting, running and failed ones always named), and
    when its oldest waiting row started waiting (None: none waits)."""

    name: str
    rows: dict[str, int]
    oldest_waiting: datetime | None

    def waited(self, now: datetime) -> float:
        """Seconds the oldest waiting row has waited at `now` (0: none waits)."""
        if self.oldest_waiting is None:
            return 0.0
        return max(0.0, (now - self.oldest_waiting).total_seconds())


def queue_states() -> list[QueueState]:
    """Every registered queue's rows by status, and since when its oldest waiting row has
    waited (since it was last sent to the broker, or since it was accepted if it never was;
    a retry, since its backoff ended). One grouped query per queue: read at scrape time and
    by the activity tally, never by a page."""
    states = []
    for entry in registered(current_app).values():
        queue, table = entry.queue, entry.queue.table
        counts: dict[str, int] = dict.fromkeys(map(str, (queue.waiting, queue.running)), 0)
        counts[str(queue.failed)] = 0
        oldest: datetime | None = None
        waiting_since = func.min(func.coalesce(table.c.enqueued_at, table.c.created_at))
        grouped = select(table.c.status, func.count(), waiting_since).group_by(table.c.status)
        for status, count, since in db.session.execute(grouped):
            counts[str(status)] = count
            if status == queue.waiting:
                oldest = since
        states.append(QueueState(queue.name, counts, oldest))
    db.session.rollback()
    return states


def queue_metrics(now: datetime) -> Iterator[Metric]:
    """A scrape-time reader (`metrics.add_reader`): `queue_states()` as gauges."""
    rows = GaugeMetricFamily(
        "backoffice_work_queue_rows", "Rows of a work queue by status.", labels=["queue", "status"]
    )
    ages = GaugeMetricFamily(
        "backoffice_work_queue_oldest_waiting_seconds",
        "How long the oldest waiting row of a queue has waited (0: none waits).",
        labels=["queue"],
    )
    for state in queue_states():
        for status, count in state.rows.items():
            rows.add_metric([state.name, status], count)
        ages.add_metric([state.name], state.waited(now))
    yield rows
    yield ages


#: In a queue's snapshot (`activity`), the label holding its oldest waiting row's time
#: (seconds since the epoch); every other label is a status.
OLDEST_WAITING = "oldest_waiting_since"


def queue_snapshot() -> dict[str, dict[str, float]]:
    """`queue_states()` as the activity tally stores them: per `queue:<name>` series, the
    rows by status and OLDEST_WAITING."""
    snapshot: dict[str, dict[str, float]] = {}
    for state in queue_states():
        figures: dict[str, float] = {status: float(n) for status, n in state.rows.items()}
        if state.oldest_waiting is not None:
            figures[OLDEST_WAITING] = state.oldest_waiting.timestamp()
        snapshot[f"queue:{state.name}"] = figures
    return snapshot


def snapshot_states(snapshot: Mapping[str, Mapping[str, float]]) -> list[QueueState]:
    """The queue states a stored snapshot holds (`queue_snapshot` read back)."""
    states = []
    for series, figures in snapshot.items():
        since = figures.get(OLDEST_WAITING)
        rows = {status: int(n) for status, n in figures.items() if status != OLDEST_WAITING}
        oldest = None if since is None else datetime.fromtimestamp(since, UTC)
        states.append(QueueState(series.removeprefix("queue:"), rows, oldest))
    return states


def _lookup(queue_name: str) -> tuple[WorkQueue, Perform]:
    entry = registered(current_app)[queue_name]
    return entry.queue, entry.perform


def relay() -> int:
    """Send again, for every registered queue, what is not in the queue; how many."""
    drained = broker_drained()
    return sum(_relay(entry.queue, drained) for entry in registered(current_app).values())


def broker_drained() -> bool:
    """Whether the broker's queue holds no message a worker has yet to take. Then a row
    sent a while ago and still unclaimed is not waiting its turn behind others: the worker
    that took its message died holding it (or the message was lost), and it is sent
    again. While the queue holds messages that rule waits (a backlog would otherwise be
    sent again and again). False when the broker does not answer: nothing can be sent."""
    celery_app: Celery = current_app.extensions["celery"]
    try:
        with celery_app.pool.acquire(block=True, timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
            queue = celery_app.amqp.queues[celery_app.conf.task_default_queue]
            # Declared as the workers declare it; a virtual broker (Redis, the embedded
            # one) answers how many messages wait in it, without creating anything.
            declared = queue.bind(connection.default_channel).queue_declare()
    except Exception as error:
        log.warning("broker_depth_unknown", error=type(error).__name__)
        return False
    return bool(declared.message_count == 0)


def _relay(queue: WorkQueue, drained: bool) -> int:
    table, now, lease = queue.table, utcnow(), queue.lease()
    resend_after = timedelta(seconds=current_app.config["RESEND_UNCLAIMED_SECONDS"])
    unclaimed_for = resend_after if drained else queue.resend_after_leases * lease
    stale = db.session.scalars(
        select(table.c.id)
        .where(
            or_(
                and_(
                    table.c.status == queue.waiting,
                    or_(
                        and_(table.c.enqueued_at.is_(None), table.c.created_at < now - RELAY_GRACE),
                        table.c.enqueued_at < now - unclaimed_for,
                    ),
                ),
                and_(table.c.status == queue.running, table.c.lease_until < now),
            )
        )
        .limit(RELAY_BATCH)
    ).all()
    db.session.rollback()
    return sum(send(queue, row_id) for row_id in stale)


def retry_delay(attempt: int) -> int:
    """Seconds before attempt `attempt + 1` after attempt `attempt` failed: 1, 2, 4, ..."""
    return int(2 ** (attempt - 1))


# --- Celery -------------------------------------------------------------------------


def define_tasks(celery_app: Celery, app: Flask) -> None:
    """One Celery task per registered queue, named by the queue: run the row, retry with
    exponential backoff when the run (or the database) says so."""
    for entry in registered(app).values():
        _define_task(celery_app, entry.queue)


def _define_task(celery_app: Celery, queue: WorkQueue) -> None:
    def run(task: Task, row_id: str) -> None:
        try:
            retry = process(queue.name, uuid.UUID(row_id))
        except SQLAlchemyError as error:
            db.session.rollback()
            raise task.retry(exc=error, countdown=retry_delay(task.request.retries + 1)) from error
        if retry:
            raise task.retry(countdown=retry_delay(task.request.retries + 1))

    celery_app.task(
        name=queue.task_name, bind=True, max_retries=queue.max_attempts + 1, shared=False
    )(run)
    if queue.rows_per_message > 1:
        _define_many_task(celery_app, queue)


def _define_many_task(celery_app: Celery, queue: WorkQueue) -> None:
    def run_many(named: list[list[str | None]]) -> None:
        """Run each row in turn, with the id of the request that accepted it in the log.
        A row to retry goes back to the queue alone, as the one-row task's first retry
        would send it (a row the database failed too); if that send fails, the row waits
        with its due time and the relay sends it."""
        for row_id, request_id in named:
            context = {"request_id": request_id} if request_id else {}
            with structlog.contextvars.bound_contextvars(**context):
                retry = _process_one(queue, str(row_id))
                if retry:
                    _send_retry(celery_app, queue, str(row_id))

    celery_app.task(name=queue.many_task_name, shared=False)(run_many)


def _process_one(queue: WorkQueue, row_id: str) -> bool:
    """`process` for one row of a shared message; True when it should be retried."""
    try:
        return process(queue.name, uuid.UUID(row_id))
    except SQLAlchemyError as error:
        db.session.rollback()
        log.warning("work_database_error", queue=queue.name, id=row_id, error=type(error).__name__)
        return True


def _send_retry(celery_app: Celery, queue: WorkQueue, row_id: str) -> None:
    try:
        celery_app.send_task(queue.task_name, args=[row_id], countdown=retry_delay(1), retries=1)
    except Exception as error:
        log.warning("enqueue_failed", queue=queue.name, id=row_id, error=type(error).__name__)
