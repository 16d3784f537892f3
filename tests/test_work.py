"""The leased-work engine (`backoffice.work`), the same tests for every queue.

Each test runs for jobs and for webhook events, with the test-only `slow` kind of work
that `tests.testing_worker` registers: it records each start and end in a trace file,
so a test counts how many times the work ran. Faults are real: a broker that does not
answer, a message that never reaches a worker, a worker killed with SIGKILL.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from apiflask import APIFlask
from sqlalchemy import update

from backoffice import work
from backoffice.config import ConfigError
from backoffice.database import utcnow
from backoffice.extensions import db
from backoffice.jobs import service as jobs
from backoffice.jobs.models import Job
from backoffice.transactions import commit
from backoffice.webhooks import service as webhooks
from backoffice.webhooks.models import WebhookEvent
from tests.support import eventually

#: A port nothing listens on: publishing there fails at once.
DEAD_BROKER = "redis://127.0.0.1:1/0"
QUEUES = {"jobs": jobs.QUEUE, "webhooks": webhooks.QUEUE}
FINISHED = {"succeeded", "processed", "failed", "ignored"}
SUCCEEDED = {"jobs": "succeeded", "webhooks": "processed"}


@pytest.fixture(params=sorted(QUEUES))
def queue(request: pytest.FixtureRequest) -> work.WorkQueue:
    return QUEUES[request.param]


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace.txt"
    path.touch()
    return path


def accept(
    app: APIFlask,
    queue: work.WorkQueue,
    owner: uuid.UUID,
    spec: dict[str, Any],
    wait_sent: bool = True,
) -> uuid.UUID:
    """Accept a `slow` row the way the services do: committed, then handed to the
    process's sender; by default, once the sender has sent it (or the broker refused it)."""
    with app.app_context():
        if queue is jobs.QUEUE:
            row: Job | WebhookEvent = Job(
                user_id=owner, type="slow", input=spec, status=queue.waiting
            )
        else:
            row = WebhookEvent(
                source="default",
                delivery_id=uuid.uuid4().hex,
                event_type="slow",
                payload=spec,
                raw_body=orjson.dumps(spec),
                status=queue.waiting,
            )
        db.session.add(row)
        db.session.flush()
        work.send_after_commit(queue, row.id)
        commit()
    if wait_sent:
        assert work.sender(app).wait_sent(timeout=30)
    return row.id


def state(in_db: Callable[..., Any], queue: work.WorkQueue, row_id: uuid.UUID) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        table = queue.table
        row = db.session.execute(table.select().where(table.c.id == row_id)).one()
        return dict(row._mapping)

    return dict(in_db(read))


def wait_until(
    in_db: Callable[..., Any],
    queue: work.WorkQueue,
    row_id: uuid.UUID,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> dict[str, Any]:
    return eventually(lambda: state(in_db, queue, row_id), done, timeout=timeout)


def finished(row: dict[str, Any]) -> bool:
    return row["status"] in FINISHED


def runs(trace: Path) -> list[str]:
    return trace.read_text().split()


def test_work_accepted_while_the_broker_is_down_is_done_once(
    queue, make_app, database_url, worker, member, trace, in_db
):
    down = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL=DEAD_BROKER)
    row_id = accept(down, queue, member.id, {"trace": str(trace)})
    assert state(in_db, queue, row_id)["enqueued_at"] is None  # the send failed
    # The worker's relay finds the accepted, never-sent row and sends it itself.
    row = wait_until(in_db, queue, row_id, finished)
    assert row["status"] == SUCCEEDED[queue.name]
    assert row["attempts"] == 1
    assert row["enqueued_at"] is not None
    assert runs(trace) == ["start", "end"]


def test_work_a_process_died_holding_unsent_is_sent_by_the_relay_and_done_once(
    queue, make_app, database_url, queue_settings, worker, member, trace, in_db
):
    """The process died between the commit and the publish: its sender held the row and
    never sent it (a sender without a thread, never asked to send, stands for it)."""
    dying = make_app(DATABASE_URL=database_url, **queue_settings)
    work.install_sender(dying, work.Sender(dying, background=False))
    row_id = accept(dying, queue, member.id, {"trace": str(trace)}, wait_sent=False)
    assert state(in_db, queue, row_id)["enqueued_at"] is None
    row = wait_until(in_db, queue, row_id, finished)
    assert row["status"] == SUCCEEDED[queue.name]
    assert row["attempts"] == 1
    assert row["enqueued_at"] is not None  # sent by the relay
    assert runs(trace) == ["start", "end"]


def waiting_messages(app: APIFlask) -> int:
    celery_app = app.extensions["celery"]
    with celery_app.pool.acquire(block=True, timeout=5) as connection:
        queue = celery_app.amqp.queues[celery_app.conf.task_default_queue]
        return int(queue.bind(connection.default_channel).queue_declare().message_count)


def test_rows_accepted_together_are_sent_in_one_batch_and_stamped(
    queue, make_app, database_url, member, tmp_path, in_db
):
    unread = make_app(
        DATABASE_URL=database_url, CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'unread.db'}"
    )
    batched = work.install_sender(unread, work.Sender(unread, background=False))
    rows = [accept(unread, queue, member.id, {}, wait_sent=False) for _ in range(30)]
    assert {state(in_db, queue, row_id)["enqueued_at"] for row_id in rows} == {None}
    assert batched.send_pending() == 30
    assert batched.send_pending() == 0
    assert None not in {state(in_db, queue, row_id)["enqueued_at"] for row_id in rows}
    # A message per job; webhook events accepted together share one.
    assert waiting_messages(unread) == math.ceil(30 / queue.rows_per_message)


def test_events_sharing_a_message_each_run_once_and_a_failed_one_is_retried_alone(
    make_app, database_url, queue_settings, worker, member, tmp_path, in_db
):
    queue = webhooks.QUEUE
    sharing = make_app(DATABASE_URL=database_url, **queue_settings)
    batched = work.install_sender(sharing, work.Sender(sharing, background=False))
    traces = [tmp_path / f"trace-{n}.txt" for n in range(4)]
    specs = [{"trace": str(trace), "fail_attempts": n % 2} for n, trace in enumerate(traces)]
    rows = [accept(sharing, queue, member.id, spec, wait_sent=False) for spec in specs]
    assert batched.send_pending() == 4  # one message for the four
    for n, (row_id, trace) in enumerate(zip(rows, traces, strict=True)):
        row = wait_until(in_db, queue, row_id, finished)
        assert row["status"] == "processed"
        assert row["attempts"] == 1 + n % 2  # the odd ones failed once, then ran again
        assert runs(trace) == ["start", "end"]


def test_a_batch_the_broker_refuses_stays_unstamped_for_the_relay(
    queue, make_app, database_url, member, in_db
):
    down = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL=DEAD_BROKER)
    batched = work.install_sender(down, work.Sender(down, background=False))
    rows = [accept(down, queue, member.id, {}, wait_sent=False) for _ in range(3)]
    assert batched.send_pending() == 0
    assert {state(in_db, queue, row_id)["enqueued_at"] for row_id in rows} == {None}
    assert batched.wait_sent(timeout=0)  # refused, not pending: the relay's now


def test_a_lost_message_is_sent_again_after_several_leases_and_done_once(
    queue, app, make_app, database_url, worker, member, trace, tmp_path, in_db
):
    # Sent to a broker no worker reads: as good as a message lost on the way.
    unread = make_app(
        DATABASE_URL=database_url, CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'lost.db'}"
    )
    row_id = accept(unread, queue, member.id, {"trace": str(trace)})
    sent = state(in_db, queue, row_id)
    assert sent["enqueued_at"] is not None
    with app.app_context():  # not yet: sent a moment ago, it may be waiting its turn
        assert work.relay() == 0

    def lose_it_long_ago() -> None:
        lease = timedelta(seconds=app.config[queue.lease_setting])
        table = queue.table
        db.session.execute(
            update(table)
            .where(table.c.id == row_id)
            .values(enqueued_at=utcnow() - (queue.resend_after_leases + 1) * lease)
        )
        db.session.commit()

    in_db(lose_it_long_ago)
    row = wait_until(in_db, queue, row_id, finished)
    assert row["status"] == SUCCEEDED[queue.name]
    assert row["attempts"] == 1
    assert row["enqueued_at"] > sent["enqueued_at"]
    assert runs(trace) == ["start", "end"]


def test_work_whose_worker_is_killed_mid_run_is_done_again_exactly_once(
    queue, make_app, database_url, worker, start_worker, member, trace, tmp_path, in_db
):
    broker = f"sqla+sqlite:///{tmp_path / 'dedicated.db'}"
    dedicated = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL=broker)
    doomed = start_worker(CELERY_BROKER_URL=broker)
    row_id = accept(dedicated, queue, member.id, {"trace": str(trace), "steps": 20, "step": 0.2})
    eventually(lambda: runs(trace), lambda seen: seen == ["start"], interval=0.05)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert state(in_db, queue, row_id)["status"] == queue.running  # its claim remains
    # Once the lease runs out, the session worker's relay sends it again.
    row = wait_until(in_db, queue, row_id, finished, timeout=120)
    assert row["status"] == SUCCEEDED[queue.name]
    assert row["attempts"] == 2
    assert runs(trace) == ["start", "start", "end"]


def test_a_run_longer_than_its_lease_renews_it_and_runs_once(
    queue, app, make_app, database_url, worker, start_worker, member, trace, in_db
):
    start_worker()  # a second, idle worker that would take an expired lease
    lease = app.config[queue.lease_setting]
    spec = {"trace": str(trace), "steps": 4 * lease, "step": 0.5}  # twice the lease
    row_id = accept(app, queue, member.id, spec)
    row = wait_until(in_db, queue, row_id, finished, timeout=120)
    assert row["status"] == SUCCEEDED[queue.name]
    assert row["attempts"] == 1
    assert runs(trace) == ["start", "end"]


def test_claims_are_fenced_by_attempt_and_status(
    queue, make_app, database_url, member, trace, tmp_path
):
    unread = make_app(
        DATABASE_URL=database_url, CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'unread.db'}"
    )
    row_id = accept(unread, queue, member.id, {"trace": str(trace)})
    with unread.app_context():  # a requeue sends to the broker no worker reads
        first = work.claim(queue, row_id)
        assert first is not None
        assert work.claim(queue, row_id) is None  # the lease is live
        table = queue.table
        db.session.execute(update(table).where(table.c.id == row_id).values(lease_until=utcnow()))
        db.session.commit()
        second = work.claim(queue, row_id)  # the first attempt is presumed dead
        assert second is not None
        assert second.number == first.number + 1
        with pytest.raises(work.LeaseLost):
            first.renew()
        assert not work.record(queue, row_id, first.number, status=queue.failed)
        second.renew()
        # Made to wait again (a replay): the running attempt can no longer record.
        assert work.requeue(queue, row_id)
        assert not work.record(queue, row_id, second.number, status=queue.failed)
        row = db.session.execute(table.select().where(table.c.id == row_id)).one()
        assert (row.status, row.attempts) == (queue.waiting, second.number)


# --- messages a dead worker took and never started -----------------------------------


def end_behind_its_back(
    in_db: Callable[..., Any], queue: work.WorkQueue, row_id: uuid.UUID
) -> None:
    """Make a row final under a run in progress: the run's next renewal is fenced out
    (LeaseLost) and its worker is free at once; the relay never sends the row again."""

    def write() -> None:
        table = queue.table
        db.session.execute(
            update(table)
            .where(table.c.id == row_id)
            .values(status=queue.failed, finished_at=utcnow(), lease_until=None)
        )
        db.session.commit()

    in_db(write)


@dataclass
class OwnBroker:
    """A broker no other test's worker reads: an app that sends to it, and its workers."""

    sender: APIFlask
    start_worker: Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def own_broker(
    queue_settings: dict[str, str],
    tmp_path: Path,
    make_app: Callable[..., APIFlask],
    database_url: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> Iterator[OwnBroker]:
    """A SQLite file beside SQLite; keys of their own in the run's Redis database beside
    PostgreSQL. Its workers are stopped and its keys deleted afterwards: a worker left
    running would go on relaying the database's rows to a broker only it reads."""
    broker = queue_settings["CELERY_BROKER_URL"]
    own = {"CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'own.db'}"}
    prefix = f"{uuid.uuid4().hex}:"
    if broker.startswith("redis"):
        own = {"CELERY_BROKER_URL": broker, "TEST_BROKER_KEY_PREFIX": prefix}
    sender = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL=own["CELERY_BROKER_URL"])
    if broker.startswith("redis"):
        sender.extensions["celery"].conf.broker_transport_options["global_keyprefix"] = prefix
    workers: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str) -> subprocess.Popen[bytes]:
        workers.append(start_worker(*arguments, **own))
        return workers[-1]

    yield OwnBroker(sender, start)
    for process in workers:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if broker.startswith("redis"):
        with redis.Redis.from_url(broker) as client:
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)


def test_messages_a_killed_worker_took_and_never_started_run_elsewhere_within_the_bound(
    app, own_broker, queue_settings, member, tmp_path, in_db
):
    """A worker holds messages it has not started (here one thread and a prefetch of 4;
    in production, retries waiting out their countdown, or a prefork child's next one) and
    is SIGKILLed. The other worker, busy until then, runs them within
    RESEND_UNCLAIMED_SECONDS and a relay interval: sent again by its relay (both brokers)
    or given back by Redis. Before, they waited ten leases for the relay (twenty minutes
    by default) or Redis's next sweep of unacknowledged messages (about 100 s).

    On a broker of the test's own, so no other test's idle worker takes what the doomed
    one must hold. Other workers on the same database may still run them (their relays
    see the rows): within the bound too, which is all that is asserted."""
    queue, sender = webhooks.QUEUE, own_broker.sender
    traces = {name: tmp_path / f"{name}.txt" for name in ("busy", "running", "a", "b", "c")}
    for path in traces.values():
        path.touch()
    long_run = {"steps": 600, "step": 0.1}

    # The survivor takes a long run first: busy with it, it takes nothing else.
    own_broker.start_worker()
    busy = accept(sender, queue, member.id, {"trace": str(traces["busy"]), **long_run})
    eventually(lambda: runs(traces["busy"]), lambda seen: seen == ["start"])
    doomed = own_broker.start_worker(
        "--pool", "threads", "--concurrency", "1", "--prefetch-multiplier", "4"
    )
    running = accept(sender, queue, member.id, {"trace": str(traces["running"]), **long_run})
    held = [accept(sender, queue, member.id, {"trace": str(traces[name])}) for name in "abc"]
    eventually(lambda: runs(traces["running"]), lambda seen: seen == ["start"])
    with sender.app_context():
        eventually(work.broker_drained)  # the doomed worker has taken every message

    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    killed = time.monotonic()
    end_behind_its_back(in_db, queue, busy)  # the survivor is free from now on
    end_behind_its_back(in_db, queue, running)  # (its own recovery is the lease's, above)

    bound = sum(
        float(queue_settings[name])
        for name in ("RESEND_UNCLAIMED_SECONDS", "RELAY_INTERVAL_SECONDS")
    )
    deadline = killed + bound + 3  # + the survivor's next poll of the broker, and the runs
    for row_id in held:
        row = wait_until(
            in_db, queue, row_id, finished, timeout=max(0.0, deadline - time.monotonic())
        )
        assert row["status"] == SUCCEEDED[queue.name]
        assert row["attempts"] == 1  # one claim: the doomed worker never made one
    assert [runs(traces[name]) for name in "abc"] == [["start", "end"]] * 3


# --- registering a queue ------------------------------------------------------------------


def test_every_registered_queue_with_a_lease_of_zero_stops_the_start(make_app):
    """Each queue's lease setting is checked as the queue is registered (no list of the
    settings is kept elsewhere): a refused one stops `create_app()`, naming it."""
    registered = work.registered(make_app(DATABASE_URL="sqlite://"))
    settings = {entry.queue.lease_setting for entry in registered.values()}
    assert {"JOB_LEASE_SECONDS", "WEBHOOK_LEASE_SECONDS"} <= settings  # not vacuous
    for setting in settings:
        with pytest.raises(ConfigError, match=rf"^{setting} must be a positive number"):
            make_app(DATABASE_URL="sqlite://", **{setting: "0"})


def test_a_new_queue_is_registered_only_with_a_lease_setting_that_holds_a_lease(make_app):
    app = make_app(DATABASE_URL="sqlite://")
    gadgets = replace(jobs.QUEUE, name="gadgets", lease_setting="GADGET_LEASE_SECONDS")

    def perform(attempt: work.Attempt) -> work.Outcome:
        return work.Outcome("succeeded")

    with pytest.raises(RuntimeError, match=r"'gadgets'.*GADGET_LEASE_SECONDS is not a setting"):
        work.register(app, gadgets, perform)
    for refused in (0, -1, "60", None, True):
        app.config["GADGET_LEASE_SECONDS"] = refused
        with pytest.raises(ConfigError, match=r"^GADGET_LEASE_SECONDS must be a positive"):
            work.register(app, gadgets, perform)
    assert "gadgets" not in work.registered(app)

    app.config["GADGET_LEASE_SECONDS"] = 45
    work.register(app, gadgets, perform)
    assert work.registered(app)["gadgets"] == work.Registered(gadgets, perform)
    with app.app_context():
        assert gadgets.lease() == timedelta(seconds=45)
