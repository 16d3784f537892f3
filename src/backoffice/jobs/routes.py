from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response, url_for

from backoffice.conventions import no_content
from backoffice.guards import authenticated, current_principal
from backoffice.idempotency import idempotent
from backoffice.jobs import service
from backoffice.jobs.schemas import JobAccepted, JobIn, JobList, JobOut, JobQuery
from backoffice.openapi import problem_responses
from backoffice.pagination import page_response

bp = APIBlueprint("jobs", __name__, tag="Jobs")

CSV_RESPONSES: dict[int | str, Any] = {
    200: {"description": "The report", "content": {"text/csv": {"schema": {"type": "string"}}}}
}
CSV_RESPONSES.update((status, text) for status, text in problem_responses(404, 409).items())


@bp.post("/jobs")
@bp.auth_required(authenticated, roles=["jobs"])
@idempotent
@bp.input(JobIn, arg_name="new_job")
@bp.output(JobAccepted, status_code=202)
@bp.doc(responses=problem_responses(400, 401, 403, 413, 415, 422))
def create_job(new_job: JobIn) -> Any:
    """Start a job: 202, then follow Location until it has succeeded or failed"""
    spec = new_job.root
    job = service.create_job(current_principal().user_id, spec.type, spec.input.model_dump())
    return job, 202, {"Location": url_for(".get_job", job_id=job.id)}


@bp.get("/jobs")
@bp.auth_required(authenticated, roles=["jobs"])
@bp.input(JobQuery, location="query", arg_name="query")
@bp.output(JobList)
@bp.doc(responses=problem_responses(400, 401, 403))
def list_jobs(query: JobQuery) -> Any:
    """Your jobs (everyone's for an admin), newest first"""
    caller = current_principal()
    page = service.list_jobs(caller.user_id, caller.is_admin, query.limit, query.cursor)
    return page_response(page)


@bp.get("/jobs/<uuid:job_id>")
@bp.auth_required(authenticated, roles=["jobs"])
@bp.output(JobOut)
@bp.doc(responses=problem_responses(400, 401, 403, 404))
def get_job(job_id: uuid.UUID) -> Any:
    """A job: status, progress (0-100), result or error"""
    caller = current_principal()
    return service.visible_job(job_id, caller.user_id, caller.is_admin)


@bp.delete("/jobs/<uuid:job_id>")
@bp.auth_required(authenticated, roles=["jobs"])
@bp.doc(responses={204: "Cancelled", **problem_responses(400, 401, 403, 404, 409)})
def cancel_job(job_id: uuid.UUID) -> Response:
    """Cancel a queued job (409 once it runs)"""
    caller = current_principal()
    service.cancel_job(job_id, caller.user_id, caller.is_admin)
    return no_content()


@bp.get("/jobs/<uuid:job_id>/result")
@bp.auth_required(authenticated, roles=["jobs"])
@bp.doc(responses=CSV_RESPONSES)
def get_job_result(job_id: uuid.UUID) -> Response:
    """The CSV an inventory-report job produced"""
    caller = current_principal()
    body = service.job_result_csv(job_id, caller.user_id, caller.is_admin)
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="inventory-{job_id}.csv"'},
    )
