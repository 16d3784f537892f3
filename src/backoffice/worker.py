"""The Celery worker entry point: `celery -A backoffice.worker worker`.

Besides running tasks, every worker runs two periodic threads:

- the relay, every RELAY_INTERVAL_SECONDS: sends again, for every registered queue, the
  accepted work that is not in the queue (the broker was down when it was accepted, its
  message was lost, or its worker died mid-task). See `backoffice.work`.
- the activity tally, every ACTIVITY_INTERVAL_SECONDS (0: never): the figures the console's
  overview charts, one worker at a time. See `backoffice.activity`.
- housekeeping, every PRUNE_INTERVAL_SECONDS (0: never): retention deletes what has
  expired, one worker at a time (the others skip the tick). See `backoffice.housekeeping`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from celery.signals import (
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from sqlalchemy.exc import SQLAlchemyError

from backoffice import activity, housekeeping, metrics, work
from backoffice.queue import celery_for
from backoffice.startup import app_from_environment

flask_app = app_from_environment()
app = celery_for(flask_app)
log = structlog.get_logger(__name__)
_stopping = threading.Event()


def _every(interval: float, name: str, tick: Callable[[], None]) -> None:
    """Run `tick` in an app context every `interval` seconds until the worker stops; a
    tick that fails is logged and the loop goes on (it must outlive any one bad tick)."""
    while not _stopping.wait(interval):
        with flask_app.app_context():
            try:
                tick()
            except SQLAlchemyError as error:
                log.warning(f"{name}_failed", error=type(error).__name__)
            except Exception:
                log.exception(f"{name}_crashed")


def _relay() -> None:
    sent = work.relay()
    if sent:
        log.info("relay_sent", messages=sent)


def _prune() -> None:
    started = time.monotonic()
    deleted = housekeeping.prune()
    if deleted is None:
        return  # another worker is pruning
    if any(deleted.values()):
        log.info("pruned", seconds=round(time.monotonic() - started, 3), **deleted)


def _tally() -> None:
    activity.tally()


def _start_periodic(**_: Any) -> None:
    periodic = {
        "relay": (flask_app.config["RELAY_INTERVAL_SECONDS"], _relay),
        "prune": (flask_app.config["PRUNE_INTERVAL_SECONDS"], _prune),
        "tally": (flask_app.config["ACTIVITY_INTERVAL_SECONDS"], _tally),
    }
    for name, (interval, tick) in periodic.items():
        if interval > 0:
            threading.Thread(
                target=_every, args=(interval, name, tick), name=name, daemon=True
            ).start()


def _stop_periodic(**_: Any) -> None:
    _stopping.set()


def _forget_live_gauges(**_: Any) -> None:
    """A worker process that ends takes its live gauges (checked-out connections) out of
    the sums; its counters stay. The pool's child processes and the main one alike."""
    metrics.process_ended(os.getpid())


worker_ready.connect(_start_periodic, weak=False)
worker_shutting_down.connect(_stop_periodic, weak=False)
worker_process_shutdown.connect(_forget_live_gauges, weak=False)
worker_shutdown.connect(_forget_live_gauges, weak=False)
