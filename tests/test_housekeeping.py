"""Retention (`backoffice.housekeeping`): what has expired is deleted, and nothing else.

The clock is passed in (`now`), never slept on: each boundary is tested a second before
and a second after it.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    Table,
    Uuid,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)

from backoffice import housekeeping, work
from backoffice.activity import ActivityFigure
from backoffice.auth.models import RevokedToken
from backoffice.database import new_id, utcnow
from backoffice.extensions import db
from backoffice.housekeeping import Retention
from backoffice.idempotency.models import IdempotencyRecord
from backoffice.idempotency.service import ABANDONED_AFTER
from backoffice.jobs import service as jobs
from backoffice.jobs.models import Job
from backoffice.todos.models import Todo
from backoffice.webhooks.models import WebhookEvent
from tests.auth.racing import all_at_once
from tests.support import assert_problem, count_rows, eventually

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)
MODELS = {
    "idempotency_records": IdempotencyRecord,
    "revoked_tokens": RevokedToken,
    "jobs": Job,
    "webhook_events": WebhookEvent,
    "activity_figures": ActivityFigure,
}

on_postgresql_only = pytest.mark.parametrize(
    "database_url",
    ["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [],
    indirect=True,
)


# --- rows as the services leave them -------------------------------------------------


def record(expires_at: datetime, *, answered: bool = True, created_at: datetime = NOW) -> Any:
    return IdempotencyRecord(
        principal=str(uuid.uuid4()),
        key=uuid.uuid4().hex,
        fingerprint="0" * 64,
        expires_at=expires_at,
        created_at=created_at,
        status_code=201 if answered else None,
        response_headers={"Content-Type": "application/json"} if answered else None,
        response_body=b'{"id": "x"}' if answered else None,
    )


def revoked(expires_at: datetime) -> RevokedToken:
    return RevokedToken(jti=uuid.uuid4().hex, expires_at=expires_at)


def job(owner: uuid.UUID, status: str, finished_at: datetime | None) -> Job:
    return Job(
        user_id=owner,
        type="text-analysis",
        input={"text": "to be"},
        status=status,
        finished_at=finished_at,
        result={"words": 2} if status == "succeeded" else None,
    )


def webhook_event(status: str, finished_at: datetime | None) -> WebhookEvent:
    return WebhookEvent(
        source="default",
        delivery_id=uuid.uuid4().hex,
        event_type="ping",
        payload={"type": "ping"},
        raw_body=b'{"type": "ping"}',
        status=status,
        finished_at=finished_at,
    )


def figure(hour: datetime, number: int) -> ActivityFigure:
    """A figure the console's overview reads (`backoffice.activity`), tallied for `hour`."""
    return ActivityFigure(series="requests", hour=hour, label=f"label-{number}", value=1.0)


def add(app: APIFlask, rows: dict[str, Any]) -> dict[str, Any]:
    """Store named rows; their ids (primary keys) by name."""
    with app.app_context():
        db.session.add_all(rows.values())
        db.session.commit()
        return {
            name: row.jti if isinstance(row, RevokedToken) else row.id for name, row in rows.items()
        }


def survivors(app: APIFlask, model: type, ids: dict[str, Any]) -> set[str]:
    """The names in `ids` whose rows are still stored."""
    key = RevokedToken.jti if model is RevokedToken else model.id  # type: ignore[attr-defined]
    with app.app_context():
        kept = set(db.session.scalars(select(key).where(key.in_(ids.values()))))
    return {name for name, row_id in ids.items() if row_id in kept}


def prune(app: APIFlask, now: datetime = NOW, **options: Any) -> dict[str, int]:
    with app.app_context():
        deleted = housekeeping.prune(now, **options)
    assert deleted is not None
    return deleted


def bulk_expired_records(app: APIFlask, count: int, expires_at: datetime = NOW - DAY) -> None:
    """`count` answered, expired idempotency records, as keyed POSTs leave them."""
    rows = [
        {
            "id": new_id(),
            "principal": "bulk",
            "key": f"key-{n}",
            "fingerprint": "0" * 64,
            "expires_at": expires_at,
            "status_code": 201,
            "response_headers": {"Content-Type": "application/json"},
            "response_body": b'{"id": "x"}',
            "created_at": expires_at - DAY,
            "updated_at": expires_at - DAY,
        }
        for n in range(count)
    ]
    with app.app_context():
        db.session.execute(insert(IdempotencyRecord), rows)
        db.session.commit()


# --- boundaries ------------------------------------------------------------------------


def test_answered_idempotency_records_go_once_expired(app):
    ids = add(
        app,
        {
            "expired a second ago": record(NOW - SECOND),
            "expires in a second": record(NOW + SECOND),
        },
    )
    assert prune(app)["idempotency_records"] == 1
    assert survivors(app, IdempotencyRecord, ids) == {"expires in a second"}


def test_an_expired_claim_in_flight_is_kept_until_it_is_abandoned(app):
    """A claim whose request may still be running is never pruned under it; one left by a
    request that died (in flight for longer than requests live) is."""
    ids = add(
        app,
        {
            "young claim": record(
                NOW - DAY, answered=False, created_at=NOW - ABANDONED_AFTER + SECOND
            ),
            "abandoned claim": record(
                NOW - DAY, answered=False, created_at=NOW - ABANDONED_AFTER - SECOND
            ),
            "unexpired claim": record(
                NOW + SECOND, answered=False, created_at=NOW - ABANDONED_AFTER - DAY
            ),
        },
    )
    assert prune(app)["idempotency_records"] == 1
    assert survivors(app, IdempotencyRecord, ids) == {"young claim", "unexpired claim"}


def test_revoked_tokens_go_once_the_token_would_have_expired(app):
    ids = add(app, {"expired": revoked(NOW - SECOND), "still valid": revoked(NOW + SECOND)})
    assert prune(app)["revoked_tokens"] == 1
    assert survivors(app, RevokedToken, ids) == {"still valid"}


def test_finished_jobs_go_after_job_retention_days_and_waiting_work_never(app, member):
    boundary = NOW - 30 * DAY
    rows = {}
    for status in ("succeeded", "failed", "cancelled"):
        rows[f"{status} before"] = job(member.id, status, boundary - SECOND)
        rows[f"{status} after"] = job(member.id, status, boundary + SECOND)
    # Never due, however old: a queued job, a running one, and one back in the queue for a
    # retry (its old finish time is kept by nothing but this test).
    rows["queued"] = job(member.id, "queued", None)
    rows["running"] = job(member.id, "running", None)
    rows["queued again"] = job(member.id, "queued", boundary - 365 * DAY)
    ids = add(app, rows)
    assert prune(app)["jobs"] == 3
    assert survivors(app, Job, ids) == {
        "succeeded after",
        "failed after",
        "cancelled after",
        "queued",
        "running",
        "queued again",
    }


def test_webhook_events_go_after_their_retention_and_failed_ones_are_kept_longer(app):
    done, failed = NOW - 30 * DAY, NOW - 90 * DAY
    ids = add(
        app,
        {
            "processed before": webhook_event("processed", done - SECOND),
            "processed after": webhook_event("processed", done + SECOND),
            "ignored before": webhook_event("ignored", done - SECOND),
            "ignored after": webhook_event("ignored", done + SECOND),
            "failed 31 days ago": webhook_event("failed", done - SECOND),
            "failed before": webhook_event("failed", failed - SECOND),
            "failed after": webhook_event("failed", failed + SECOND),
            "received": webhook_event("received", None),
            "processing": webhook_event("processing", None),
            "received again (replayed)": webhook_event("received", failed - 365 * DAY),
        },
    )
    assert prune(app)["webhook_events"] == 3
    assert survivors(app, WebhookEvent, ids) == {
        "processed after",
        "ignored after",
        "failed 31 days ago",
        "failed after",
        "received",
        "processing",
        "received again (replayed)",
    }


def test_a_retention_of_zero_days_keeps_forever(make_app, database_url, member):
    forever = make_app(
        DATABASE_URL=database_url,
        JOB_RETENTION_DAYS="0",
        WEBHOOK_RETENTION_DAYS="0",
        WEBHOOK_FAILED_RETENTION_DAYS="0",
    )
    long_ago = NOW - 36500 * DAY
    ids = add(
        forever,
        {
            "job": job(member.id, "succeeded", long_ago),
            "processed": webhook_event("processed", long_ago),
            "failed": webhook_event("failed", long_ago),
            "record": record(NOW - SECOND),
        },
    )
    deleted = prune(forever)
    assert deleted == {
        "idempotency_records": 1,
        "revoked_tokens": 0,
        "jobs": 0,
        "webhook_events": 0,
        "activity_figures": 0,
    }
    assert survivors(forever, Job, ids) == {"job"}
    assert survivors(forever, WebhookEvent, ids) == {"processed", "failed"}
    with forever.app_context():
        ages = housekeeping.overdue_ages(NOW)
    assert ages["jobs"] is None
    assert ages["webhook_events"] is None


# --- what is registered ------------------------------------------------------------


def test_a_newly_registered_retention_is_pruned_counted_and_watched(make_app, database_url, member):
    """A capability declares what it keeps and for how long and registers it: the pruner,
    `flask prune --dry-run` and the overdue ages take its table, with no list to edit."""
    todos: Table = Todo.__table__  # type: ignore[assignment]
    finished_todos = Retention(
        todos, todos.c.id, todos.c.updated_at, 7 * DAY, where=lambda _: todos.c.done.is_(True)
    )
    app = make_app(DATABASE_URL=database_url)
    housekeeping.init_retention(app, [*housekeeping.retentions(app), finished_todos])
    assert housekeeping.tables(app) == (*MODELS, "todos")

    def todo(done: bool, updated_at: datetime) -> Todo:
        return Todo(user_id=member.id, task="Ship it", done=done, updated_at=updated_at)

    ids = add(
        app,
        {
            "done, due a second ago": todo(True, NOW - 7 * DAY - SECOND),
            "done, due in a second": todo(True, NOW - 7 * DAY + SECOND),
            "open, a year old": todo(False, NOW - 365 * DAY),
        },
    )
    with app.app_context():
        assert housekeeping.count_expired(NOW)["todos"] == 1
        assert housekeeping.overdue_ages(NOW)["todos"] == 1.0
    assert prune(app)["todos"] == 1
    assert survivors(app, Todo, ids) == {"done, due in a second", "open, a year old"}


def test_a_work_queue_without_a_retention_fails_at_start_up(make_app):
    """Its finished rows would pile up unseen: `create_app()` stops instead, as it does for
    a job type without a runner. So does a retention naming a setting that is not one."""
    app = make_app(DATABASE_URL="sqlite://")
    declared = housekeeping.retentions(app)
    gadgets = Table(
        "gadgets",
        MetaData(),
        Column("id", Uuid, primary_key=True),
        Column("finished_at", DateTime(timezone=True)),
    )
    queue = replace(jobs.QUEUE, name="gadgets", table=gadgets)
    work.register(app, queue, lambda attempt: work.Outcome("succeeded"))
    refused = re.escape("no retention for the work queues' tables ['gadgets']")
    with pytest.raises(RuntimeError, match=refused):
        housekeeping.init_retention(app, declared)

    kept = Retention(gadgets, gadgets.c.id, gadgets.c.finished_at, "GADGET_RETENTION_DAYS")
    with pytest.raises(RuntimeError, match="no setting GADGET_RETENTION_DAYS"):
        housekeeping.init_retention(app, [*declared, kept])
    assert housekeeping.retentions(app) == declared

    app.config["GADGET_RETENTION_DAYS"] = 30
    housekeeping.init_retention(app, [*declared, kept])
    assert housekeeping.tables(app) == (*MODELS, "gadgets")


# --- what a client sees -------------------------------------------------------------


def test_a_pruned_idempotency_key_is_a_fresh_key_again(app, client, in_db):
    headers = {"Idempotency-Key": "restock-7"}
    first = client.post("/api/items", json={"name": "Widget", "quantity": 1}, headers=headers)
    replay = client.post("/api/items", json={"name": "Widget", "quantity": 1}, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.json["id"] == first.json["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"

    ttl = timedelta(seconds=app.config["IDEMPOTENCY_TTL_SECONDS"])
    assert prune(app, utcnow() + ttl + SECOND)["idempotency_records"] == 1

    again = client.post("/api/items", json={"name": "Widget", "quantity": 1}, headers=headers)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert again.json["id"] != first.json["id"]
    assert client.get(f"/api/items/{first.json['id']}").status_code == 200
    assert client.get(f"/api/items/{again.json['id']}").status_code == 200
    assert in_db(lambda: count_rows(IdempotencyRecord)) == 1


def test_a_job_deleted_by_retention_is_404(app, client, make_app, database_url, tmp_path):
    # Started through a broker no worker reads: a worker left running by another test
    # must not finish the job before this one cancels it.
    unread = make_app(
        DATABASE_URL=database_url, CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'unread.db'}"
    )
    starter = unread.test_client()
    starter.environ_base["HTTP_AUTHORIZATION"] = client.environ_base["HTTP_AUTHORIZATION"]
    accepted = starter.post("/api/jobs", json={"type": "inventory-report"}).json
    url = f"/api/jobs/{accepted['id']}"
    assert client.delete(url).status_code == 204  # cancelled: finished now
    assert client.get(url).json["status"] == "cancelled"
    assert prune(app, utcnow() + 30 * DAY - SECOND)["jobs"] == 0
    assert client.get(url).status_code == 200

    assert prune(app, utcnow() + 30 * DAY + SECOND)["jobs"] == 1
    assert_problem(client.get(url), 404)
    assert_problem(client.get(f"{url}/result"), 404)
    assert all(j["id"] != accepted["id"] for j in client.get("/api/jobs").json["data"])


def test_a_webhook_event_deleted_by_retention_is_404_and_its_delivery_id_new_again(
    make_app, database_url, queue_settings, as_user, admin
):
    gateway = make_app(
        DATABASE_URL=database_url, WEBHOOK_UNSIGNED_SOURCES="default", **queue_settings
    )
    delivery = {"id": "evt_retention", "type": "no.such.handler"}
    stored = gateway.test_client().post("/api/webhook", json=delivery)
    assert stored.status_code == 201
    with gateway.app_context():
        assert work.process("webhooks", uuid.UUID(stored.json["id"])) is False
    staff = as_user(admin)
    url = f"/api/webhooks/events/{stored.json['id']}"
    assert staff.get(url).json["status"] == "ignored"

    assert prune(gateway, utcnow() + 30 * DAY + SECOND)["webhook_events"] == 1
    assert_problem(staff.get(url), 404)
    assert_problem(staff.post(f"{url}/replay"), 404)
    # Its delivery id is forgotten with it: the same delivery now is a new event.
    again = gateway.test_client().post("/api/webhook", json=delivery)
    assert again.status_code == 201
    assert again.json["status"] == "success"
    assert again.json["id"] != stored.json["id"]


# --- batches, and pruners side by side ------------------------------------------------


@pytest.fixture
def deletes(app: APIFlask) -> Iterator[list[str]]:
    """Every DELETE statement the app's engine runs, as it runs them."""
    seen: list[str] = []

    def log(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "after_cursor_execute", log)
    yield seen
    event.remove(engine, "after_cursor_execute", log)


def test_a_backlog_is_deleted_in_batches_while_requests_are_served(app, client, deletes, in_db):
    bulk_expired_records(app, 2_000)
    done = threading.Event()
    result: dict[str, int] = {}

    def run() -> None:
        try:
            result.update(prune(app, utcnow(), batch_size=50))
        finally:
            done.set()

    pruner = threading.Thread(target=run)
    statuses: list[int] = []
    pruner.start()
    n = 0
    while not done.is_set():
        n += 1
        headers = {"Idempotency-Key": f"during-{n}"}
        statuses.append(
            client.post(
                "/api/items", json={"name": f"During {n}", "quantity": 1}, headers=headers
            ).status_code
        )
        statuses.append(client.get("/api/items?limit=5").status_code)
    pruner.join(timeout=120)

    assert result["idempotency_records"] == 2_000
    batches = [
        s
        for s in deletes
        if s.startswith("DELETE FROM idempotency_records") and "LIMIT" in s  # not the claims' own
    ]
    assert len(batches) == 2_000 // 50 + 1  # 40 full batches, then one that finds none
    assert statuses
    assert set(statuses) == {200, 201}
    # What is left is what the requests made meanwhile: their keys, still remembered.
    assert in_db(lambda: count_rows(IdempotencyRecord)) == n


def fill_every_table(app: APIFlask, owner: uuid.UUID, count: int) -> dict[str, int]:
    """`count` due rows in every table; how many per table."""
    bulk_expired_records(app, count)
    old = NOW - 365 * DAY
    with app.app_context():
        db.session.add_all([revoked(NOW - SECOND) for _ in range(count)])
        db.session.add_all([job(owner, "succeeded", old) for _ in range(count)])
        db.session.add_all([webhook_event("processed", old) for _ in range(count)])
        db.session.add_all([figure(old, n) for n in range(count)])
        db.session.commit()
    return dict.fromkeys(housekeeping.tables(app), count)


def test_two_pruners_at_once_delete_each_row_once(make_app, app, database_url, member, in_db):
    """Two processes' worth of pruners (each its own app and connections) racing batch for
    batch, without the one-pruner lock: every row is deleted once, by one of them."""
    due = fill_every_table(app, member.id, 400)
    pruners = [make_app(DATABASE_URL=database_url) for _ in range(2)]

    def sweep(pruner: APIFlask) -> dict[str, int]:
        with pruner.app_context():
            return housekeeping.delete_expired(NOW, batch_size=25)

    first, second = all_at_once([lambda p=p: sweep(p) for p in pruners])
    assert {t: first[t] + second[t] for t in due} == due
    for model in MODELS.values():
        assert in_db(lambda m=model: count_rows(m)) == 0


def test_pruners_started_together_prune_once_between_them(
    make_app, app, database_url, member, in_db
):
    """What two workers do on the same tick: one prunes, the other skips (PostgreSQL's
    lock) or finds nothing left; never an error, never a row deleted twice."""
    due = fill_every_table(app, member.id, 200)
    pruners = [make_app(DATABASE_URL=database_url) for _ in range(3)]

    def tick(pruner: APIFlask) -> dict[str, int] | None:
        with pruner.app_context():
            return housekeeping.prune(NOW, batch_size=20)

    results = all_at_once([lambda p=p: tick(p) for p in pruners])
    ran = [r for r in results if r is not None]
    assert ran
    assert {t: sum(r[t] for r in ran) for t in due} == due
    for model in MODELS.values():
        assert in_db(lambda m=model: count_rows(m)) == 0


@on_postgresql_only
def test_a_worker_skips_its_tick_while_another_prunes(app, database_url, member, in_db):
    """The lock is PostgreSQL's advisory lock: held elsewhere, `prune` does nothing."""
    add(app, {"record": record(NOW - SECOND)})
    other = create_engine(database_url)
    try:
        with other.connect() as holder:
            assert holder.scalar(select(func.pg_try_advisory_lock(housekeeping.LOCK_KEY)))
            with app.app_context():
                assert housekeeping.prune(NOW) is None
            result = app.test_cli_runner().invoke(args=["prune"])
            assert result.exit_code == 1
            assert "Another pruner" in result.output
            assert in_db(lambda: count_rows(IdempotencyRecord)) == 1
            holder.execute(text(f"SELECT pg_advisory_unlock({housekeeping.LOCK_KEY})"))
    finally:
        other.dispose()
    assert prune(app)["idempotency_records"] == 1


# --- the command line, the workers, the operator's view -------------------------------


def test_flask_prune_dry_run_counts_and_deletes_nothing(app, member, in_db):
    long_ago = utcnow() - 400 * DAY
    add(
        app,
        {
            "record 1": record(long_ago),
            "record 2": record(long_ago),
            "token": revoked(long_ago),
            "job": job(member.id, "failed", long_ago),
            "kept job": job(member.id, "queued", None),
            "event": webhook_event("ignored", long_ago),
        },
    )
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "idempotency_records: 2 would be deleted",
        "revoked_tokens: 1 would be deleted",
        "jobs: 1 would be deleted",
        "webhook_events: 1 would be deleted",
        "activity_figures: 0 would be deleted",
    ]
    stored = {name: in_db(lambda m=model: count_rows(m)) for name, model in MODELS.items()}
    assert stored == {
        "idempotency_records": 2,
        "revoked_tokens": 1,
        "jobs": 2,
        "webhook_events": 1,
        "activity_figures": 0,
    }

    real = runner.invoke(args=["prune"])
    assert real.exit_code == 0, real.output
    assert real.output.splitlines() == [
        "idempotency_records: 2 deleted",
        "revoked_tokens: 1 deleted",
        "jobs: 1 deleted",
        "webhook_events: 1 deleted",
        "activity_figures: 0 deleted",
    ]
    assert in_db(lambda: count_rows(Job)) == 1


def test_overdue_ages_name_how_long_the_most_overdue_row_has_been_due(app, member):
    add(
        app,
        {
            "record due 2 minutes ago": record(NOW - 120 * SECOND),
            "record due 1 minute ago": record(NOW - 60 * SECOND),
            "job due a day ago": job(member.id, "succeeded", NOW - 31 * DAY),
            "failed event, not due": webhook_event("failed", NOW - 31 * DAY),
        },
    )
    with app.app_context():
        ages = housekeeping.overdue_ages(NOW)
    assert ages == {
        "idempotency_records": 120.0,
        "revoked_tokens": None,
        "jobs": 86400.0,
        "webhook_events": None,
        "activity_figures": None,
    }
    prune(app)
    with app.app_context():
        assert housekeeping.overdue_ages(NOW) == dict.fromkeys(housekeeping.tables(app))


def test_workers_prune_on_their_schedule(app, start_worker, in_db):
    """A real worker with PRUNE_INTERVAL_SECONDS set deletes what is due by itself."""
    ids = add(app, {"expired": record(utcnow() - SECOND), "live": record(utcnow() + DAY)})
    worker = start_worker(PRUNE_INTERVAL_SECONDS="0.2")
    try:
        eventually(lambda: survivors(app, IdempotencyRecord, ids), lambda s: s == {"live"})
    finally:
        worker.terminate()
        worker.wait(timeout=30)
