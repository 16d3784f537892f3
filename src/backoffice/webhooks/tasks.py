"""The Celery task that processes a stored event, retried with exponential backoff."""

from __future__ import annotations

import uuid

from celery import Task, shared_task
from sqlalchemy.exc import SQLAlchemyError

from backoffice.webhooks import service


@shared_task(name=service.TASK_NAME, bind=True, max_retries=service.MAX_ATTEMPTS)
def process_event(self: Task, event_id: str) -> None:
    try:
        retry = service.process(uuid.UUID(event_id))
    except SQLAlchemyError as error:
        raise self.retry(exc=error, countdown=2**self.request.retries) from error
    if retry:
        raise self.retry(countdown=2**self.request.retries)
