"""Cancelling a running job (the console's Cancel), replaying a finished one, and the
list's filters: the jobs service, with a real worker where a job must run."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from backoffice import work
from backoffice.errors import Conflict, NotFound
from backoffice.extensions import db
from backoffice.jobs import service as jobs
from backoffice.jobs.models import Job
from backoffice.transactions import commit
from tests.support import eventually


class Viewer:
    def __init__(self, user_id: uuid.UUID, is_admin: bool = False) -> None:
        self.user_id = user_id
        self.is_admin = is_admin


def accept_slow(owner: uuid.UUID, spec: dict[str, Any]) -> uuid.UUID:
    """A test-only `slow` job (tests.testing_worker), accepted as `create_job` does."""
    job = Job(user_id=owner, type="slow", input=spec, status=jobs.QUEUE.waiting)
    db.session.add(job)
    db.session.flush()
    work.send_after_commit(jobs.QUEUE, job.id)
    commit()
    return job.id


def row(job_id: uuid.UUID) -> Job:
    found = db.session.get(Job, job_id)
    assert found is not None
    db.session.refresh(found)
    return found


@pytest.fixture
def unserved(app, make_app, database_url, tmp_path):
    """The app on a broker no worker reads: jobs stay queued."""
    return make_app(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'nobody-reads.db'}",
        JOB_LEASE_SECONDS="3600",
    )


def test_a_running_job_cancelled_stops_at_its_next_progress_report(
    app, make_app, database_url, start_worker, worker_logs, member, as_user, tmp_path, in_db
):
    broker = f"sqla+sqlite:///{tmp_path / 'dedicated.db'}"
    dedicated = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL=broker)
    start_worker(CELERY_BROKER_URL=broker)  # a worker of this test's own: one job at a time
    trace, after = tmp_path / "long.txt", tmp_path / "after.txt"
    trace.touch()
    after.touch()
    with dedicated.app_context():
        long_job = accept_slow(member.id, {"trace": str(trace), "steps": 600, "step": 0.1})
    eventually(lambda: trace.read_text().split(), lambda seen: seen == ["start"], interval=0.05)
    eventually(lambda: in_db(lambda: row(long_job).progress), lambda p: p > 0, interval=0.05)
    # The API keeps its contract: DELETE cancels only a queued job.
    api = as_user(member)
    assert api.delete(f"/api/jobs/{long_job}").status_code == 409
    with dedicated.app_context():
        jobs.cancel_job(long_job, Viewer(member.id), running_too=True)
        cancelled = row(long_job)
        assert (cancelled.status, cancelled.lease_until) == ("cancelled", None)
        assert cancelled.finished_at is not None
        # The worker runs one job at a time: the next one runs only once the cancelled
        # one has stopped, at its next progress report (0.1 s), not after its 60 s.
        next_job = accept_slow(member.id, {"trace": str(after)})
    done = eventually(
        lambda: in_db(lambda: row(next_job).status), lambda s: s == "succeeded", timeout=20
    )
    assert done == "succeeded"
    assert trace.read_text().split() == ["start"]  # never finished

    def stopped_in_a_log() -> bool:  # the run itself saw it was no longer its own
        return any(
            "lease_lost" in line and str(long_job) in line
            for log in worker_logs.glob("worker-*.log")
            for line in log.read_text(errors="replace").splitlines()
        )

    assert eventually(stopped_in_a_log, bool, timeout=10)
    stopped = in_db(lambda: row(long_job))
    assert (stopped.status, stopped.result, stopped.lease_until) == ("cancelled", None, None)
    assert stopped.finished_at == cancelled.finished_at
    assert api.get(f"/api/jobs/{long_job}").json["status"] == "cancelled"


def test_a_finished_job_cannot_be_cancelled(unserved, member):
    with unserved.app_context():
        job = jobs.create_job(member.id, "text-analysis", {"text": "once"})
        jobs.cancel_job(job.id, Viewer(member.id), running_too=True)
        with pytest.raises(Conflict, match="queued or running"):
            jobs.cancel_job(job.id, Viewer(member.id), running_too=True)
        with pytest.raises(Conflict, match="Only a queued job"):
            jobs.cancel_job(job.id, Viewer(member.id))


def test_a_finished_job_is_replayed_as_a_new_job_of_its_owner(unserved, member, admin):
    with unserved.app_context():
        old = jobs.create_job(member.id, "text-analysis", {"text": "again"})
        with pytest.raises(Conflict, match="Only a finished job"):
            jobs.replay_job(old.id, Viewer(member.id))
        jobs.cancel_job(old.id, Viewer(member.id))
        new = jobs.replay_job(old.id, Viewer(admin.id, is_admin=True))  # an admin, for them
        assert new.id != old.id
        assert (new.user_id, new.type, new.input) == (member.id, "text-analysis", {"text": "again"})
        assert new.status == "queued"
        assert row(old.id).status == "cancelled"  # the old one stays as it ended
        assert work.sender(unserved).wait_sent(timeout=30)
        assert row(new.id).enqueued_at is not None  # sent to the queue
        assert len(db.session.scalars(select(Job)).all()) == 2


def test_another_persons_job_cannot_be_replayed_or_cancelled(unserved, member, make_user):
    stranger = make_user()
    with unserved.app_context():
        job = jobs.create_job(member.id, "inventory-report", {})
        with pytest.raises(NotFound):
            jobs.cancel_job(job.id, Viewer(stranger.id), running_too=True)
        jobs.cancel_job(job.id, Viewer(member.id))
        with pytest.raises(NotFound):
            jobs.replay_job(job.id, Viewer(stranger.id))
        assert len(db.session.scalars(select(Job)).all()) == 1


def test_the_list_filters_by_status_and_type(unserved, member, make_user):
    other = make_user()
    with unserved.app_context():
        report = jobs.create_job(member.id, "inventory-report", {})
        text = jobs.create_job(member.id, "text-analysis", {"text": "x"})
        jobs.create_job(other.id, "text-analysis", {"text": "theirs"})
        jobs.cancel_job(report.id, Viewer(member.id))
        mine = Viewer(member.id)

        def ids(**filters: Any) -> list[uuid.UUID]:
            return [r.id for r in jobs.list_jobs(mine, 25, None, **filters).data]

        assert ids() == [text.id, report.id]
        assert ids(status="cancelled") == [report.id]
        assert ids(job_type="text-analysis") == [text.id]
        assert ids(status="queued", job_type="inventory-report") == []
        everyone = jobs.list_jobs(
            Viewer(other.id, is_admin=True), 25, None, job_type="text-analysis"
        )
        assert len(everyone.data) == 2
