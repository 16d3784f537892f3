"""The overview's figures: each capability's hourly count over real rows, the worker's
tally that stores them, and the readers the console calls (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backoffice import activity, work
from backoffice.extensions import db
from backoffice.jobs import service as jobs
from backoffice.jobs.models import Job, JobStatus
from backoffice.orders import service as orders
from backoffice.orders.models import Order, OrderStatus
from backoffice.webhooks import service as webhooks
from backoffice.webhooks.models import EventStatus, WebhookEvent
from tests.support import eventually

NOW = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def event(n: int, status: str, finished_at: datetime | None) -> WebhookEvent:
    return WebhookEvent(
        source="test",
        delivery_id=f"d{n}",
        event_type="x",
        payload={},
        raw_body=b"{}",
        status=status,
        finished_at=finished_at,
    )


def test_outcomes_are_counted_per_hour_by_status_and_only_finished_ones(app):
    with app.app_context():
        this_hour = NOW.replace(minute=0)
        db.session.add_all(
            [
                event(1, EventStatus.PROCESSED, this_hour + timedelta(minutes=1)),
                event(2, EventStatus.PROCESSED, this_hour + timedelta(minutes=59)),
                event(3, EventStatus.FAILED, this_hour),
                event(4, EventStatus.IGNORED, this_hour - timedelta(seconds=1)),  # the hour before
                event(5, EventStatus.PROCESSED, this_hour + HOUR),  # the next hour
                event(6, EventStatus.RECEIVED, None),
            ]
        )
        db.session.commit()
        assert webhooks.count_outcomes(this_hour, this_hour + HOUR) == {
            "processed": 2.0,
            "failed": 1.0,
        }
        assert webhooks.count_outcomes(this_hour - HOUR, this_hour) == {"ignored": 1.0}


def test_the_tally_stores_hours_and_the_overview_reads_them_back(app):
    with app.app_context():
        db.session.add_all(
            [
                event(1, EventStatus.PROCESSED, NOW - timedelta(minutes=5)),
                event(2, EventStatus.FAILED, NOW - 3 * HOUR),
                event(3, EventStatus.RECEIVED, None),
            ]
        )
        db.session.commit()
        counted = activity.tally(NOW)
        assert counted is not None
        assert counted["webhook_outcomes"] == 24  # a fresh database: every hour of the day
        assert counted["order_transitions"] == 2 + activity.BACKFILL_HOURS  # in steps
        hourly = activity.hourly("webhook_outcomes", 24, NOW)
        assert hourly.hours[-1] == NOW.replace(minute=0)
        assert hourly.values[-1] == {"processed": 1.0}
        assert hourly.values[-4] == {"failed": 1.0}
        assert hourly.totals() == {"processed": 1.0, "failed": 1.0}
        # The next tick recounts only the last two hours (and the orders' backlog).
        again = activity.tally(NOW + timedelta(minutes=1))
        assert again is not None
        assert again["webhook_outcomes"] == 2
        assert activity.last_tally() == NOW + timedelta(minutes=1)


def test_the_queue_snapshot_holds_rows_by_status_and_the_oldest_waiting(app):
    with app.app_context():
        waiting = event(1, EventStatus.RECEIVED, None)
        waiting.created_at = NOW - timedelta(minutes=10)
        db.session.add_all([waiting, event(2, EventStatus.FAILED, NOW)])
        db.session.commit()
        activity.tally(NOW)
        taken, snapshot = activity.latest_snapshots("queue:")
        assert taken == NOW
        states = {state.name: state for state in work.snapshot_states(snapshot)}
        assert states["webhooks"].rows == {"received": 1, "processing": 0, "failed": 1}
        assert states["webhooks"].waited(NOW) == 600.0
        assert states["jobs"].rows == {"queued": 0, "running": 0, "failed": 0}
        assert states["jobs"].oldest_waiting is None


def test_request_counters_add_what_they_grew_by_to_the_current_hour(app):
    totals = {"2xx": 10.0}
    with app.app_context():
        declared = app.extensions["activity"]
        app.extensions["activity"] = activity.Declared(
            (), (activity.Counter("requests", lambda: dict(totals)),), ()
        )
        try:
            activity.tally(NOW)  # the first tick only starts counting
            totals.update({"2xx": 15.0, "5xx": 2.0})
            activity.tally(NOW + timedelta(minutes=1))
            totals.update({"2xx": 4.0})  # a restart: counted from zero
            activity.tally(NOW + timedelta(minutes=2))
            hourly = activity.hourly("requests", 24, NOW)
        finally:
            app.extensions["activity"] = declared
        assert hourly.values[-1] == {"2xx": 9.0, "5xx": 2.0}


def test_orders_transitions_are_counted_when_each_happened(app, member):
    with app.app_context():
        owner = member.id
        day_before = NOW - timedelta(days=1)
        db.session.add_all(
            [
                Order(
                    user_id=owner,
                    status=OrderStatus.PAID,
                    total_quantity=1,
                    created_at=day_before,
                    paid_at=NOW,
                ),
                Order(
                    user_id=owner,
                    status=OrderStatus.CANCELLED,
                    total_quantity=1,
                    created_at=NOW,
                    cancelled_at=NOW + timedelta(minutes=5),
                ),
            ]
        )
        db.session.commit()
        hour = NOW.replace(minute=0)
        assert orders.count_transitions(hour, hour + HOUR) == {
            "placed": 1.0,
            "paid": 1.0,
            "cancelled": 1.0,
        }
        assert orders.count_transitions(day_before.replace(minute=0), day_before + HOUR) == {
            "placed": 1.0
        }


def test_job_runs_are_counted_by_duration_bucket(app, member):
    with app.app_context():
        owner = member.id

        def job(status: str, seconds: float) -> Job:
            return Job(
                user_id=owner,
                type="text-analysis",
                input={},
                status=status,
                started_at=NOW - timedelta(seconds=seconds),
                finished_at=NOW,
            )

        db.session.add_all(
            [
                job(JobStatus.SUCCEEDED, 0.5),
                job(JobStatus.FAILED, 30),
                job(JobStatus.SUCCEEDED, 600),
                job(JobStatus.CANCELLED, 5),
            ]
        )
        db.session.commit()
        hour = NOW.replace(minute=0)
        assert jobs.count_run_durations(hour, hour + HOUR) == {
            "under 1 s": 1.0,
            "10 to 60 s": 1.0,
            "5 min or more": 1.0,
        }


def test_a_worker_tallies_on_its_schedule(app, start_worker):
    """A real worker with ACTIVITY_INTERVAL_SECONDS set records the figures by itself:
    the queues' snapshot appears without anyone asking."""
    with app.app_context():
        assert activity.latest_snapshots("queue:")[0] is None
    worker = start_worker(ACTIVITY_INTERVAL_SECONDS="0.2")
    try:

        def tallied() -> datetime | None:
            with app.app_context():
                return activity.latest_snapshots("queue:")[0]

        eventually(tallied)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
