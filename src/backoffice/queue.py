"""Celery, wired the Flask way: every task runs inside an app context.

The broker is the embedded SQLite file in instance/ by default (kombu's SQLAlchemy
transport: durable, no service to run) and Redis or RabbitMQ when CELERY_BROKER_URL says
so. Results are not kept by Celery: jobs store their own state in the database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery import Celery, Task
from flask import Flask
from structlog.contextvars import bound_contextvars

from backoffice import work


def broker_url(app: Flask) -> str:
    url: str = app.config["CELERY_BROKER_URL"]
    return url or f"sqla+sqlite:///{Path(app.instance_path) / 'broker.db'}"


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context(), bound_contextvars(**_log_context(self.request)):
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(
        broker_url=broker_url(app),
        task_ignore_result=True,
        # A task is acknowledged when it ends, not when it starts: a worker that dies
        # mid-task leaves the message to be delivered again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="backoffice",
        broker_connection_retry_on_startup=True,
        # A request that enqueues must not hang on a broker that is down: the relay
        # enqueues what could not be sent (see backoffice.work).
        broker_connection_timeout=2,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
        broker_transport_options=_redelivery(app.config)
        if not broker_url(app).startswith("sqla+")
        else {},
        # Our JSON log lines go to the real stdout; Celery's stand-in has no byte buffer.
        worker_redirect_stdouts=False,
    )
    # One task per registered queue: register the queues before calling this.
    work.define_tasks(celery_app, app)
    app.extensions["celery"] = celery_app
    return celery_app


def _redelivery(config: Mapping[str, Any]) -> dict[str, Any]:
    """When Redis gives a message a worker took and never acknowledged to another worker:
    once it is RESEND_UNCLAIMED_SECONDS old, found by a sweep every live worker makes every
    RELAY_INTERVAL_SECONDS. kombu's defaults (an hour, and a sweep every ~100 s: every
    10th of sweeps 10 s apart) left the messages a killed worker had reserved waiting
    minutes. A redelivery of a message still running or done costs one claim that finds
    nothing to do (`work.claim`), so a timeout shorter than a run is safe; a run longer
    than it is delivered again every RESEND_UNCLAIMED_SECONDS, each a no-op claim."""
    resend = config["RESEND_UNCLAIMED_SECONDS"]
    return {
        "visibility_timeout": resend,
        "unacked_restore_interval": config["RELAY_INTERVAL_SECONDS"],
        "unacked_restore_throttle": 1,
        # A worker killed while it held the sweep's lock must not stop the sweeps longer.
        "unacked_mutex_expire": math.ceil(resend),
    }


def _log_context(request: Any) -> dict[str, str]:
    """What every log line of a run carries: its task id, and the id of the request that
    queued it (a message header, `work.REQUEST_ID_HEADER`), when one did."""
    context = {"task_id": str(request.id)}
    request_id = request.get(work.REQUEST_ID_HEADER)
    if isinstance(request_id, str):
        context["request_id"] = request_id
    return context


def celery_for(app: Flask) -> Celery:
    celery_app: Celery = app.extensions["celery"]
    return celery_app
