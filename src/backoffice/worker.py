"""The Celery worker entry point: `celery -A backoffice.worker worker`.

Besides running tasks, every worker runs the relay: a thread that, every
RELAY_INTERVAL_SECONDS, sends again, for every registered queue, the accepted work that
is not in the queue (the broker was down when it was accepted, its message was lost, or
its worker died mid-task). See `backoffice.work`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import structlog
from celery.signals import (
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from dotenv import load_dotenv
from sqlalchemy.exc import SQLAlchemyError

from backoffice import create_app, metrics, work
from backoffice.queue import celery_for

load_dotenv()
flask_app = create_app()
app = celery_for(flask_app)
log = structlog.get_logger(__name__)
_stopping = threading.Event()


def _relay_forever() -> None:
    interval = flask_app.config["RELAY_INTERVAL_SECONDS"]
    while not _stopping.wait(interval):
        with flask_app.app_context():
            try:
                sent = work.relay()
            except SQLAlchemyError as error:
                log.warning("relay_failed", error=type(error).__name__)
                continue
            except Exception:  # the relay must outlive any one bad tick
                log.exception("relay_crashed")
                continue
        if sent:
            log.info("relay_sent", messages=sent)


def _start_relay(**_: Any) -> None:
    threading.Thread(target=_relay_forever, name="relay", daemon=True).start()


def _stop_relay(**_: Any) -> None:
    _stopping.set()


def _forget_live_gauges(**_: Any) -> None:
    """A worker process that ends takes its live gauges (checked-out connections) out of
    the sums; its counters stay. The pool's child processes and the main one alike."""
    metrics.process_ended(os.getpid())


worker_ready.connect(_start_relay, weak=False)
worker_shutting_down.connect(_stop_relay, weak=False)
worker_process_shutdown.connect(_forget_live_gauges, weak=False)
worker_shutdown.connect(_forget_live_gauges, weak=False)
