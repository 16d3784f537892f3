"""The production worker (`backoffice.worker`) plus one test-only kind of work per queue.

`celery -A tests.testing_worker worker` runs everything the real worker runs, and also
`slow` jobs and `slow` webhook events: they take `steps` steps of `step` seconds,
renewing their lease after each, and append `start` and `end` lines to the file their
input names, so a test can count how many times the work ran and finished (an event's
first `fail_attempts` attempts fail before that).

`TEST_BROKER_KEY_PREFIX` gives the worker a broker of its own inside the test run's Redis
database (every key it uses carries the prefix), as a SQLite file of its own does on the
embedded broker: tests that need workers no other test's worker competes with.

`TEST_PROGRESS_PAUSE` (seconds) makes every job runner pause that long before each progress
report it makes: a batch that would finish in a blink lasts long enough for a test to kill
its worker in the middle of it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from backoffice import work
from backoffice.jobs import service as jobs
from backoffice.webhooks import service as webhooks
from backoffice.worker import app, flask_app

__all__ = ["app"]

if prefix := os.environ.get("TEST_BROKER_KEY_PREFIX"):
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "global_keyprefix": prefix,
    }


def slow_work(spec: dict[str, Any], renew: Any) -> None:
    trace = Path(spec["trace"])
    with trace.open("a") as out:
        out.write("start\n")
    for step in range(spec.get("steps", 0)):
        time.sleep(spec.get("step", 0.1))
        renew(step)
    with trace.open("a") as out:
        out.write("end\n")


def slow_runner(job_input: dict[str, Any], progress: jobs.Progress) -> tuple[dict[str, Any], None]:
    slow_work(job_input, lambda step: progress(min(99, step)))
    return {"slow": True}, None


def slow_handler(payload: dict[str, Any], attempt: work.Attempt) -> None:
    """`slow_work`; an attempt up to `fail_attempts` fails first (a retried event)."""
    if attempt.number <= payload.get("fail_attempts", 0):
        raise RuntimeError(f"attempt {attempt.number} fails, as the event asks")
    slow_work(payload, lambda _: attempt.renew())


def paused(runner: jobs.Runner, seconds: float) -> jobs.Runner:
    def run(job_input: dict[str, Any], progress: jobs.Progress) -> tuple[dict[str, Any], Any]:
        def report(percent: int) -> None:
            time.sleep(seconds)
            progress(percent)

        return runner(job_input, report)

    return run


job_runners: dict[str, jobs.Runner] = {
    **flask_app.extensions["job_runners"],
    "slow": slow_runner,
}
if pause := os.environ.get("TEST_PROGRESS_PAUSE"):
    job_runners = {name: paused(runner, float(pause)) for name, runner in job_runners.items()}
jobs.init_runners(flask_app, job_runners)
webhooks.init_handlers(
    flask_app, {**flask_app.extensions["webhook_handlers"], "slow": slow_handler}
)
