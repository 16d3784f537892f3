"""Jobs: yours (everyone's for an admin), filtered; one job's progress, updating by itself
while it runs; start, cancel (running too), replay, and download the report."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Response, render_template, request, url_for
from pydantic import ValidationError

from backoffice.console.pages import audit, back_to, bp, cursor_arg, operator, page_limit
from backoffice.errors import Conflict
from backoffice.jobs import service as jobs
from backoffice.jobs.schemas import JobIn, JobStatus, JobType
from backoffice.users import service as users

MESSAGES = {
    "started": "The job was started.",
    "cancelled": "The job was cancelled.",
    "replayed": "The job was started again as this new job.",
}
STATUS_CLASS = {
    JobStatus.SUCCEEDED: "good",
    JobStatus.FAILED: "bad",
    JobStatus.CANCELLED: "warn",
}
#: Job types whose form text is a batch: one text per line.
BATCH_TYPES = (JobType.SENTIMENT, JobType.LANGUAGE)
#: A job in these statuses changes by itself: its page refreshes.
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def _page(template: str, **values: Any) -> str:
    return render_template(
        f"console/{template}.html",
        statuses=list(JobStatus),
        types=list(JobType),
        status_class={str(k): v for k, v in STATUS_CLASS.items()},
        message=MESSAGES.get(request.args.get("done", "")),
        **values,
    )


def _choice(name: str, allowed: list[str]) -> str | None:
    value = request.args.get(name, "")
    return value if value in allowed else None


@bp.get("/jobs")
def job_list() -> Any:
    status, job_type = _choice("status", list(JobStatus)), _choice("type", list(JobType))
    page = jobs.list_jobs(operator(), page_limit(), cursor_arg(), status, job_type)
    owners = users.emails_of([row.user_id for row in page.data]) if operator().is_admin else {}
    given = {k: v for k, v in (("status", status), ("type", job_type)) if v}
    return _page("jobs", page=page, owners=owners, given=given, form={}, errors={})


@bp.post("/jobs")
def job_start() -> Any:
    form = {"type": request.form.get("type", ""), "text": request.form.get("text", "")}
    spec: dict[str, Any] = {"type": form["type"], "input": {}}
    if form["type"] == JobType.TEXT_ANALYSIS:
        spec["input"] = {"text": form["text"]}
    elif form["type"] in BATCH_TYPES:
        spec["input"] = {"texts": form["text"].splitlines()}
    try:
        new = JobIn.model_validate(spec).root
    except ValidationError as error:
        errors = {_field_of(e["loc"]): e["msg"] for e in error.errors()}
        page = jobs.list_jobs(operator(), page_limit(), None)
        return _page("jobs", page=page, owners={}, given={}, form=form, errors=errors), 422
    job = jobs.create_job(operator().user_id, new.type, new.input.model_dump())
    audit("job.create", job=str(job.id), type=new.type)
    return back_to("console.job", "started", job_id=job.id)


def _field_of(location: tuple[Any, ...]) -> str:
    """The form field a schema error is about: the text, or else the type."""
    return "text" if {"text", "texts"} & set(location) else "type"


@bp.get("/jobs/<uuid:job_id>")
def job(job_id: uuid.UUID, problem: str | None = None) -> Any:
    found = jobs.visible_job(job_id, operator())
    pretty = json.dumps(found.result, indent=2, ensure_ascii=False) if found.result else ""
    owner = users.emails_of([found.user_id]).get(found.user_id) if operator().is_admin else None
    return _page(
        "job",
        job=found,
        owner=owner,
        pretty_result=pretty,
        active=found.status in ACTIVE,
        refresh_url=url_for("console.job", job_id=job_id),
        problem=problem,
    )


@bp.post("/jobs/<uuid:job_id>/cancel")
def job_cancel(job_id: uuid.UUID) -> Any:
    """Cancel a queued or running job; a job that has already ended says so (409)."""
    try:
        jobs.cancel_job(job_id, operator(), running_too=True)
    except Conflict as error:
        return job(job_id, problem=error.detail), 409
    audit("job.cancel", job=str(job_id))
    return back_to("console.job", "cancelled", job_id=job_id)


@bp.post("/jobs/<uuid:job_id>/replay")
def job_replay(job_id: uuid.UUID) -> Any:
    """Start a finished job again, as a new job; its page follows."""
    try:
        new = jobs.replay_job(job_id, operator())
    except Conflict as error:
        return job(job_id, problem=error.detail), 409
    audit("job.replay", job=str(job_id), new_job=str(new.id))
    return back_to("console.job", "replayed", job_id=new.id)


@bp.get("/jobs/<uuid:job_id>/result.csv")
def job_result(job_id: uuid.UUID) -> Response:
    body = jobs.job_result_csv(job_id, operator())
    disposition = f'attachment; filename="inventory-{job_id}.csv"'
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": disposition})
