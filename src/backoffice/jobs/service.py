"""Jobs: accepted durably, run through the leased-work engine, recorded exactly once.

A 202 means the row is committed; the message follows the commit, and the engine's relay
sends what the broker missed or a dead worker left (see `backoffice.work`). What a job
type computes is a runner, registered by type in `create_app()`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from pydantic import ValidationError
from sqlalchemy import Row, Table, select, update
from sqlalchemy.exc import SQLAlchemyError

from backoffice import activity, work
from backoffice.database import utcnow
from backoffice.errors import Conflict, NotFound
from backoffice.extensions import db
from backoffice.housekeeping import Retention
from backoffice.jobs.models import Job, JobStatus, JobType
from backoffice.jobs.schemas import JobIn
from backoffice.ownership import Viewer, visible_to
from backoffice.pagination import Page, paginate
from backoffice.transactions import commit

JOBS: Table = Job.__table__  # type: ignore[assignment]
#: The types POST /api/jobs accepts, whose stored input `perform` checks against `JobIn`.
ACCEPTED_TYPES = frozenset(str(job_type) for job_type in JobType)
VISIBLE_COLUMNS = select(*(c for c in JOBS.columns if c.name != "result_csv"))

#: Reports progress (0-100) and renews the lease; raises `work.LeaseLost` when fenced out.
Progress = Callable[[int], None]
#: A job type's work: its input in, `(result, csv or None)` out.
Runner = Callable[[dict[str, Any], Progress], tuple[dict[str, Any], str | None]]

QUEUE = work.WorkQueue(
    name="jobs",
    table=JOBS,
    task_name="backoffice.jobs.run",
    waiting=JobStatus.QUEUED,
    running=JobStatus.RUNNING,
    failed=JobStatus.FAILED,
    lease_setting="JOB_LEASE_SECONDS",
    error_column="error",
    max_attempts=6,
    # The database being away is worth a retry; a runner's own error is not.
    retry_on=(SQLAlchemyError,),
    claim_columns=("type", "input"),
    claim_values={"progress": 0},
    # The input may be private: record the error's kind, not its text.
    error_text=lambda error: f"{type(error).__name__}: the job could not be completed",
)
#: What retention removes (`backoffice.housekeeping`): a finished job and its results,
#: JOB_RETENTION_DAYS after it finished. A queued or running one is never due.
RETENTION = Retention(
    JOBS,
    JOBS.c.id,
    JOBS.c.finished_at,
    "JOB_RETENTION_DAYS",
    statuses=(JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED),
)


def init_runners(app: Flask, runners: Mapping[str, Runner]) -> None:
    """Register what each job type computes; every type the API accepts needs one."""
    missing = set(JobType) - runners.keys()
    if missing:
        raise RuntimeError(f"no runner for job types {sorted(missing)}")
    app.extensions["job_runners"] = dict(runners)
    work.register(app, QUEUE, perform)


def create_job(user_id: uuid.UUID, job_type: str, job_input: dict[str, Any]) -> Job:
    job = Job(user_id=user_id, type=job_type, input=job_input, status=JobStatus.QUEUED)
    db.session.add(job)
    db.session.flush()
    work.send_after_commit(QUEUE, job.id)
    commit()
    return job


def visible_job(job_id: uuid.UUID, viewer: Viewer) -> Job:
    return visible_to(Job, "job", job_id, viewer)


#: A job that has ended: it may be replayed (as a new job), never cancelled.
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def list_jobs(
    viewer: Viewer,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    job_type: str | None = None,
) -> Page[Row[Any]]:
    """The viewer's jobs (everyone's for an admin), newest first; by status and type if
    given. The same keyset range on the id as without a filter: no count, no offset."""
    query = VISIBLE_COLUMNS
    if not viewer.is_admin:
        query = query.where(JOBS.c.user_id == viewer.user_id)
    if status is not None:
        query = query.where(JOBS.c.status == status)
    if job_type is not None:
        query = query.where(JOBS.c.type == job_type)
    return paginate("jobs", query, Job.id, limit, cursor)


def cancel_job(job_id: uuid.UUID, viewer: Viewer, running_too: bool = False) -> None:
    """Cancel a queued job; with `running_too`, a running one as well (the console does).

    A running job is cancelled by taking it out of `running` (its lease released) in one
    fenced UPDATE: its attempt is fenced out (`work.record` only writes a row still
    running under that attempt), so nothing it computes is recorded, and its next
    progress report (`Attempt.renew`) finds the row no longer its own, raises
    `work.LeaseLost` and stops the run. A runner reports progress at least once per
    JOB_LEASE_SECONDS (or its lease would lapse), so the worker stops within that bound;
    the runners here report every REPORT_BATCH items. The API's DELETE keeps the
    contract's "cancels a queued job" (409 once it runs).
    """
    job = visible_job(job_id, viewer)
    cancellable = [JobStatus.QUEUED, JobStatus.RUNNING] if running_too else [JobStatus.QUEUED]
    cancelled = db.session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(cancellable))
        .values(status=JobStatus.CANCELLED, finished_at=utcnow(), lease_until=None)
    )
    commit()
    if cancelled.rowcount == 0:  # type: ignore[attr-defined]
        db.session.refresh(job)
        allowed = "a queued or running job" if running_too else "a queued job"
        raise Conflict(f"Only {allowed} can be cancelled; this one is {job.status}.")


def replay_job(job_id: uuid.UUID, viewer: Viewer) -> Job:
    """Run a finished job again: a new job of the same type and input for the same owner,
    through `create_job` (so whatever holds for starting a job holds for a replay). The
    old job stays as it ended."""
    job = visible_job(job_id, viewer)
    if job.status not in FINISHED:
        raise Conflict(f"Only a finished job can be replayed; this one is {job.status}.")
    return create_job(job.user_id, job.type, dict(job.input))


def job_result_csv(job_id: uuid.UUID, viewer: Viewer) -> str:
    job = visible_job(job_id, viewer)
    if job.status != JobStatus.SUCCEEDED or job.result_csv is None:
        if job.status == JobStatus.SUCCEEDED:
            raise NotFound("result of job", job_id)
        raise Conflict(f"The job is {job.status}; its result is not ready.")
    return job.result_csv


# --- the worker side --------------------------------------------------------------


def perform(attempt: work.Attempt) -> work.Outcome:
    """Run the job's runner; its progress renews the lease.

    The stored input of a type the API accepts is checked against it first: a row
    written by an older release, or by hand, whose input no longer fits fails with the
    reason (Rejected, never retried) instead of a runner's KeyError and a traceback.
    """
    try:
        if attempt.row.type in ACCEPTED_TYPES:  # a runner registered beside the API's types
            JobIn.model_validate({"type": attempt.row.type, "input": attempt.row.input})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'][1:]) or 'input'}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        raise work.Rejected(f"The job's input does not fit its type: {problems}") from None
    runner: Runner = current_app.extensions["job_runners"][attempt.row.type]
    result, csv_text = runner(attempt.row.input, lambda percent: attempt.renew(progress=percent))
    return work.Outcome(
        JobStatus.SUCCEEDED, {"result": result, "result_csv": csv_text, "progress": 100}
    )


# --- the overview's figures (`backoffice.activity`) -------------------------------------

#: The run durations the overview charts: (label, the shortest run it holds, in seconds).
DURATION_BUCKETS = (
    ("under 1 s", 0.0),
    ("1 to 10 s", 1.0),
    ("10 to 60 s", 10.0),
    ("1 to 5 min", 60.0),
    ("5 min or more", 300.0),
)


def count_run_durations(start: datetime, end: datetime) -> dict[str, float]:
    """Runs that ended (succeeded or failed) in `[start, end)`, by duration bucket (the last
    attempt's). A range of the `(status, finished_at)` index per status."""
    ended = db.session.execute(
        select(JOBS.c.started_at, JOBS.c.finished_at).where(
            JOBS.c.status.in_((JobStatus.SUCCEEDED, JobStatus.FAILED)),
            JOBS.c.finished_at >= start,
            JOBS.c.finished_at < end,
        )
    )
    counted: dict[str, float] = {}
    for started_at, finished_at in ended:
        if started_at is None:
            continue
        seconds = (finished_at - started_at).total_seconds()
        label = next(label for label, least in reversed(DURATION_BUCKETS) if seconds >= least)
        counted[label] = counted.get(label, 0.0) + 1
    return counted


#: Tallied each hour by the worker (`activity.Tally`), read by `run_durations`.
DURATIONS = activity.Tally("job_run_durations", count_run_durations)


def run_durations(hours: int = 24) -> dict[str, float]:
    """Runs ended in the last `hours` hours by duration bucket, every bucket named."""
    totals = activity.hourly(DURATIONS.series, hours).totals()
    return {label: totals.get(label, 0.0) for label, _ in DURATION_BUCKETS}
