"""Jobs, in the shape of items (`backoffice.items.routes`): a collection (start one: 202),
a resource (follow it; `DELETE` cancels a queued one), and its result."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask.views import MethodView
from flask import Response, url_for

from backoffice.conventions import no_content
from backoffice.guards import authenticated, current_principal
from backoffice.idempotency import idempotent
from backoffice.jobs import service
from backoffice.jobs.schemas import JobAccepted, JobIn, JobList, JobOut, JobQuery
from backoffice.openapi import problem_responses
from backoffice.output import Blueprint

bp = Blueprint("jobs", __name__, tag="Jobs")

CSV_RESPONSES: dict[int | str, Any] = {
    200: {"description": "The report", "content": {"text/csv": {"schema": {"type": "string"}}}}
}
CSV_RESPONSES.update((status, text) for status, text in problem_responses(404, 409).items())


class JobCollection(MethodView):
    """`{prefix}/jobs`: your jobs (everyone's for an admin)."""

    decorators = [bp.auth_required(authenticated, roles=["jobs"])]

    @bp.input(JobQuery, location="query", arg_name="query")
    @bp.output(JobList)
    @bp.doc(operation_id="list_jobs", responses=problem_responses(400, 401, 403))
    def get(self, query: JobQuery) -> Any:
        """Your jobs (everyone's for an admin), newest first"""
        return service.list_jobs(current_principal(), query.limit, query.cursor)

    @idempotent
    @bp.input(JobIn, arg_name="new_job")
    @bp.output(JobAccepted, status_code=202)
    @bp.doc(operation_id="create_job", responses=problem_responses(400, 401, 403, 413, 415, 422))
    def post(self, new_job: JobIn) -> Any:
        """Start a job: 202, then follow Location until it has succeeded or failed"""
        spec = new_job.root
        job = service.create_job(current_principal().user_id, spec.type, spec.input.model_dump())
        return job, 202, {"Location": url_for(".job", job_id=job.id)}


class JobResource(MethodView):
    """`{prefix}/jobs/<id>`: one of your jobs."""

    decorators = [bp.auth_required(authenticated, roles=["jobs"])]

    @bp.output(JobOut)
    @bp.doc(operation_id="get_job", responses=problem_responses(400, 401, 403, 404))
    def get(self, job_id: uuid.UUID) -> Any:
        """A job: status, progress (0-100), result or error"""
        return service.visible_job(job_id, current_principal())

    @bp.doc(
        operation_id="cancel_job",
        responses={204: "Cancelled", **problem_responses(400, 401, 403, 404, 409)},
    )
    def delete(self, job_id: uuid.UUID) -> Response:
        """Cancel a queued job (409 once it runs)"""
        service.cancel_job(job_id, current_principal())
        return no_content()


class JobResult(MethodView):
    """`{prefix}/jobs/<id>/result`: what an inventory-report job produced."""

    decorators = [bp.auth_required(authenticated, roles=["jobs"])]

    @bp.doc(operation_id="get_job_result", responses=CSV_RESPONSES)
    def get(self, job_id: uuid.UUID) -> Response:
        """The CSV an inventory-report job produced"""
        body = service.job_result_csv(job_id, current_principal())
        return Response(
            body,
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="inventory-{job_id}.csv"'},
        )


bp.add_url_rule("/jobs", view_func=JobCollection.as_view("jobs"))
bp.add_url_rule("/jobs/<uuid:job_id>", view_func=JobResource.as_view("job"))
bp.add_url_rule("/jobs/<uuid:job_id>/result", view_func=JobResult.as_view("result"))
