"""The authenticated item read in process, with the token-state cache on and off: CPU per
request (`time.process_time()`, the WSGI app called directly with a prebuilt environ, no
server) and database statements per request (a `before_cursor_execute` counter).

    DATABASE_URL=postgresql://... [REDIS_URL=redis://...] \\
        .venv/bin/python -m bench.auth_cache > /dev/null

The database is migrated and gets one user and one item. Results go to stderr (stdout
carries the app's request log lines, which are part of the cost measured).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import flask_migrate
from sqlalchemy import event
from werkzeug.test import EnvironBuilder

from backoffice import create_app
from backoffice.config import TestingConfig
from backoffice.extensions import db
from backoffice.items import service as items
from backoffice.users import service as users

SECRET_KEY = "bench-secret-key-that-is-long-enough-for-production"  # noqa: S105 (a local bench)
REQUESTS = 2000
ROUNDS = 5


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    assert status.startswith("200"), status
    return lambda data: None


def measure(database_url: str, redis_url: str, cache: bool) -> tuple[float, float]:
    """Median µs of CPU per request over `ROUNDS`, and statements per request."""
    app = create_app(
        TestingConfig.from_env(
            {
                "SECRET_KEY": SECRET_KEY,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "AUTH_CACHE": str(cache).lower(),
                "PRUNE_INTERVAL_SECONDS": "0",
            }
        )
    )
    email = f"bench-{time.time_ns()}@example.com"
    with app.app_context():
        flask_migrate.upgrade()
        users.create_user("Bench", email, "a long enough bench password")
        item = items.create_item("Bench item", None, 1)
    login = app.test_client().post(
        "/api/auth/token", json={"email": email, "password": "a long enough bench password"}
    )
    token = (login.json or {})["access_token"]
    environ = EnvironBuilder(
        path=f"/api/items/{item.id}", headers=[("Authorization", f"Bearer {token}")]
    ).get_environ()

    def call() -> None:
        for _ in app.wsgi_app(dict(environ), _start_response):
            pass

    states = app.extensions["token_states"]
    deadline = time.monotonic() + 10
    while states is not None and not states.connected:
        call()  # the listener starts on first use
        assert time.monotonic() < deadline, "the listener did not connect"
        time.sleep(0.01)
    for _ in range(200):
        call()
    sent = [0]

    def count(*_args: Any) -> None:
        sent[0] += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    for _ in range(100):
        call()
    event.remove(engine, "before_cursor_execute", count)
    per_request = sent[0] / 100
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(REQUESTS):
            call()
        rounds.append((time.process_time() - started) / REQUESTS * 1e6)
    if states is not None:
        states.stop()
    with app.app_context():
        db.engine.dispose()
    return statistics.median(rounds), per_request


def main() -> None:
    database_url = os.environ["DATABASE_URL"]
    redis_url = os.environ.get("REDIS_URL", "")
    store = "Redis" if redis_url else "the database"
    for cache in (False, True):
        cpu, statements = measure(database_url, redis_url, cache)
        print(
            f"revocations in {store}, AUTH_CACHE={str(cache).lower()}: "
            f"{cpu:.0f} µs CPU per request, {statements:.2f} statements per request",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
