"""The Celery task behind every job. Idempotent: a duplicate message finds nothing to do."""

from __future__ import annotations

import uuid

from celery import Task, shared_task
from sqlalchemy.exc import SQLAlchemyError

from backoffice.jobs import service


@shared_task(name=service.TASK_NAME, bind=True, max_retries=6)
def run_job(self: Task, job_id: str) -> None:
    try:
        service.run(uuid.UUID(job_id))
    except SQLAlchemyError as error:
        raise self.retry(exc=error, countdown=2**self.request.retries) from error
