"""Jobs: accepted durably, handed to the queue after commit, run at least once, recorded
exactly once.

A 202 means the row is committed. Sending the message happens after the commit; if the
broker is down at that moment the row simply stays un-enqueued, and the relay (run by
every worker) sends it later. A worker that dies mid-job stops renewing its lease; the
relay sends the job again and the next claim fences the dead attempt out.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import structlog
from flask import current_app
from sqlalchemy import Row, Table, and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from backoffice.database import utcnow
from backoffice.errors import Conflict, NotFound
from backoffice.extensions import db
from backoffice.jobs.models import Job, JobStatus
from backoffice.jobs.runners import RUNNERS
from backoffice.pagination import Page, paginate
from backoffice.queue import send

log = structlog.get_logger(__name__)

JOBS: Table = Job.__table__  # type: ignore[assignment]
TASK_NAME = "backoffice.jobs.run"
#: Accepted work younger than this is left to the request that accepted it.
RELAY_GRACE = timedelta(seconds=2)
#: A sent job still unclaimed after this many leases is sent again (its message was lost,
#: e.g. with a worker that died between fetching and claiming it). Long, because a busy
#: queue also leaves jobs unclaimed for a while, and each resend is a duplicate message.
RESEND_AFTER_LEASES = 10
VISIBLE_COLUMNS = select(*(c for c in JOBS.columns if c.name != "result_csv"))


def create_job(user_id: uuid.UUID, job_type: str, job_input: dict[str, Any]) -> Job:
    job = Job(user_id=user_id, type=job_type, input=job_input)
    db.session.add(job)
    db.session.commit()
    enqueue(job.id)
    return job


def enqueue(job_id: uuid.UUID) -> bool:
    return send(TASK_NAME, JOBS, job_id)


def visible_job(job_id: uuid.UUID, viewer_id: uuid.UUID, viewer_is_admin: bool) -> Job:
    job = db.session.get(Job, job_id)
    if job is None or (job.user_id != viewer_id and not viewer_is_admin):
        raise NotFound("job", job_id)
    return job


def list_jobs(
    viewer_id: uuid.UUID, viewer_is_admin: bool, limit: int, cursor: str | None
) -> Page[Row[Any]]:
    query = (
        VISIBLE_COLUMNS if viewer_is_admin else VISIBLE_COLUMNS.where(JOBS.c.user_id == viewer_id)
    )
    return paginate("jobs", query, Job.id, limit, cursor)


def cancel_job(job_id: uuid.UUID, viewer_id: uuid.UUID, viewer_is_admin: bool) -> None:
    job = visible_job(job_id, viewer_id, viewer_is_admin)
    cancelled = db.session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=utcnow())
    )
    db.session.commit()
    if cancelled.rowcount == 0:  # type: ignore[attr-defined]
        db.session.refresh(job)
        raise Conflict(f"Only a queued job can be cancelled; this one is {job.status}.")


def job_result_csv(job_id: uuid.UUID, viewer_id: uuid.UUID, viewer_is_admin: bool) -> str:
    job = visible_job(job_id, viewer_id, viewer_is_admin)
    if job.status != JobStatus.SUCCEEDED or job.result_csv is None:
        if job.status == JobStatus.SUCCEEDED:
            raise NotFound("result of job", job_id)
        raise Conflict(f"The job is {job.status}; its result is not ready.")
    return job.result_csv


# --- the worker side --------------------------------------------------------------


def _lease() -> timedelta:
    return timedelta(seconds=current_app.config["JOB_LEASE_SECONDS"])


def claim(job_id: uuid.UUID) -> tuple[int, str, dict[str, Any]] | None:
    """Take the job for this attempt: queued, or running under a lease that ran out."""
    now = utcnow()
    claimed = db.session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            or_(
                Job.status == JobStatus.QUEUED,
                and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),
            ),
        )
        .values(
            status=JobStatus.RUNNING,
            attempts=Job.attempts + 1,
            started_at=now,
            lease_until=now + _lease(),
            progress=0,
        )
        .returning(Job.attempts, Job.type, Job.input)
    ).first()
    db.session.commit()
    return (claimed.attempts, claimed.type, claimed.input) if claimed else None


def _record(job_id: uuid.UUID, attempt: int, **values: Any) -> bool:
    """Write for this attempt only: a newer claim fences an older, presumed-dead one out."""
    done = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempts == attempt, Job.status == JobStatus.RUNNING)
        .values(**values)
    )
    db.session.commit()
    return bool(done.rowcount)  # type: ignore[attr-defined]


def run(job_id: uuid.UUID) -> None:
    """Run the job if it is ours to run; record its outcome exactly once."""
    claimed = claim(job_id)
    if claimed is None:
        return  # done, cancelled, or running elsewhere under a live lease
    attempt, job_type, job_input = claimed

    def progress(percent: int) -> None:
        _record(job_id, attempt, progress=percent, lease_until=utcnow() + _lease())

    try:
        result, csv_text = RUNNERS[job_type](job_input, progress)
    except SQLAlchemyError:
        db.session.rollback()
        _record(job_id, attempt, status=JobStatus.QUEUED, lease_until=None)
        raise  # transient: the task retries with backoff
    except Exception as error:  # a bug or bad input: the job fails, the worker goes on
        db.session.rollback()
        log.exception("job_failed", job_id=str(job_id))
        _record(
            job_id,
            attempt,
            status=JobStatus.FAILED,
            error=f"{type(error).__name__}: the job could not be completed",
            finished_at=utcnow(),
            lease_until=None,
        )
        return
    _record(
        job_id,
        attempt,
        status=JobStatus.SUCCEEDED,
        result=result,
        result_csv=csv_text,
        progress=100,
        finished_at=utcnow(),
        lease_until=None,
    )


def relay() -> int:
    """Send again what was accepted but is not (or no longer) in the queue; how many."""
    now = utcnow()
    stale = db.session.scalars(
        select(Job.id).where(
            or_(
                and_(
                    Job.status == JobStatus.QUEUED,
                    or_(
                        and_(Job.enqueued_at.is_(None), Job.created_at < now - RELAY_GRACE),
                        # Sent long ago and never claimed: the message was lost.
                        Job.enqueued_at < now - RESEND_AFTER_LEASES * _lease(),
                    ),
                ),
                and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),
            )
        )
    ).all()
    db.session.rollback()
    return sum(enqueue(job_id) for job_id in stale)
