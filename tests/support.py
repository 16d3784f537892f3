"""What more than one test module needs: settings, accounts, problem bodies, jobs, and
waiting.

Test modules import from here (and from the factories), never from one another.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from backoffice.config import TestingConfig
from backoffice.extensions import db
from backoffice.webhooks.signatures import sign
from bench.servers import free_port as free_port  # one copy, shared with the bench
from bench.servers import healthy as healthy

T = TypeVar("T")

#: The repository: where `make`, `deploy/serve` and `.flaskenv` are.
ROOT = Path(__file__).resolve().parents[1]

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-production"
PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"
#: The states a job does not leave.
FINAL = frozenset({"succeeded", "failed", "cancelled"})
#: Where a test may keep its counters: the database (the default), the process, or Redis.
STORES = ["database", "memory", *(["redis"] if os.environ.get("TEST_REDIS_URL") else [])]
#: The key the chat gateway sends upstream: it must show up there and nowhere else.
LLM_KEY = "sk-test-4f9c2a7e1b-never-shown-to-anyone"
#: The model the chat gateway of the tools' tests asks for.
MODEL = "fake-model-1"


def settings(**overrides: str) -> dict[str, Any]:
    """TestingConfig as the environment would produce it, plus `overrides`."""
    return TestingConfig.from_env({"SECRET_KEY": TEST_SECRET_KEY, **overrides})


# --- waiting ----------------------------------------------------------------


def eventually(
    check: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
) -> T:
    """Call `check` until `until(result)` holds, and return that result.

    For what another process or the clock decides, when there is no event to await.
    An exception from `check` (a failed assertion) ends the wait at once; running out
    of time fails with the last result seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if until(result):
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout}s; last result: {result!r}")
        time.sleep(interval)


# --- real processes ---------------------------------------------------------------


def process_environment(**settings: str) -> dict[str, str]:
    """An environment for one of our processes: this machine's PATH (with this
    interpreter's scripts first) and HOME, and `settings`; none of the app's variables
    the test run itself may have. Its metrics directory is a fresh one of its own:
    `deploy/serve` empties the directory it is given, which must never be this test
    process's (its counters would vanish from its own scrapes)."""
    scripts = str(Path(sys.executable).parent)
    return {
        "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]),
        "HOME": os.environ.get("HOME", "/"),
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="backoffice-metrics-"),
        **settings,
    }


@dataclass(frozen=True)
class Server:
    """A `deploy/serve` a test module started: where it listens, and its log."""

    port: int
    log: Path


def serve_environment(database_url: str, home: Path, port: int, **settings: str) -> dict[str, str]:
    """What a test gives `deploy/serve`: the test's database, an instance directory and an
    embedded broker in `home`, the port, and `settings` on top (a CELERY_BROKER_URL among
    them wins: a server whose work a test's Celery worker takes shares that worker's)."""
    return process_environment(
        **{
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(home),
            "CELERY_BROKER_URL": f"sqla+sqlite:///{home / 'broker.db'}",
            "PORT": str(port),
            **settings,
        }
    )


def workers_started(log: Path, workers: int = 2) -> int:
    """How many Granian workers have loaded the app (each logs `Started worker-N`, and
    under RSGI `Started worker-N runtime-M` too), once `workers` have, or whatever the
    count is at the deadline."""
    started = re.compile(r"Started worker-\d+$", re.MULTILINE)
    return eventually(
        lambda: len(started.findall(log.read_text())),
        until=lambda n: n >= workers,
        timeout=120,
    )


@contextmanager
def deployed(
    env: Mapping[str, str], port: int, log: Path, *, timeout: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """`deploy/serve` with `env` (give it `PORT=port`), its output in `log`, until it
    answers `/health`; afterwards its whole process group is stopped."""
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 (our own script)
            [str(ROOT / "deploy" / "serve")],
            cwd=ROOT,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        eventually(lambda: process.poll() is not None or healthy(port), timeout=timeout)
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@contextmanager
def serving_module(
    database_url: str, home: Path, workers: int, **settings: str
) -> Iterator[Server]:
    """`deploy/serve` as the tests deploy it (testing profile, the tests' secret, warnings
    only) with `workers` Granian workers and `settings`, on a free port, its log in `home`,
    once every worker has loaded the app; stopped afterwards."""
    port, log = free_port(), home / "serve.log"
    env = serve_environment(
        database_url,
        home,
        port,
        APP_ENV="testing",
        SECRET_KEY=TEST_SECRET_KEY,
        LOG_LEVEL="WARNING",
        GRANIAN_WORKERS=str(workers),
        **settings,
    )
    with deployed(env, port, log):
        assert workers_started(log, workers) == workers
        yield Server(port, log)


# --- problem details --------------------------------------------------------


def assert_problem(response: Any, status: int, *fields: str) -> dict[str, Any]:
    """`response` is a complete problem body with `status`, naming exactly `fields`, if any."""
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["status"] == status
    assert body["instance"] == response.request.path
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["type"].startswith("/problems/")
    assert body["title"]
    assert body["detail"]
    if fields:
        assert {error["field"] for error in body["errors"]} == set(fields)
    return dict(body)


# --- accounts ---------------------------------------------------------------


@dataclass
class Account:
    """A user made for a test, with the password it was made with."""

    id: uuid.UUID
    email: str
    password: str
    role: str


def login(client: FlaskClient, account: Account) -> dict[str, Any]:
    """Log `account` in; the token response."""
    response = client.post(
        "/api/auth/token", json={"email": account.email, "password": account.password}
    )
    assert response.status_code == 200, response.json
    return dict(response.json)


def member_client(app: Flask, client: FlaskClient) -> FlaskClient:
    """A client of `app` that sends what `client` sends: the same caller on another app."""
    other = app.test_client()
    other.environ_base.update(client.environ_base)
    return other


# --- the database -----------------------------------------------------------


def count_rows(model: type) -> int:
    """How many rows `model`'s table holds (call inside an app context, e.g. via `in_db`)."""
    return db.session.scalar(select(func.count()).select_from(model)) or 0


# --- background work --------------------------------------------------------


def start_job(client: FlaskClient, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Submit a job; its URL and the 202 body."""
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.json
    assert response.json["status"] == "queued"
    assert response.headers["Location"] == f"/api/jobs/{response.json['id']}"
    return response.headers["Location"], dict(response.json)


def wait_for_job(client: FlaskClient, url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the job until it has finished (the worker may still be starting)."""
    return eventually(
        lambda: dict(client.get(url).json), lambda job: job["status"] in FINAL, timeout=timeout
    )


def wait_for_event(
    client: FlaskClient, event_id: str, status: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the webhook event until it has `status` (the worker may still be starting)."""
    return eventually(
        lambda: dict(client.get(f"/api/webhooks/events/{event_id}").json),
        lambda event: event["status"] == status,
        timeout=timeout,
    )


# --- webhooks ---------------------------------------------------------------


def signed_headers(
    secret: str, body: bytes, msg_id: str | None = None, at: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers signing `body` with `secret` (a fresh id, now, by default)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = int(time.time()) if at is None else at
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(at),
        "webhook-signature": sign(secret, msg_id, at, body),
    }
