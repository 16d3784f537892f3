"""The authenticated item read in process, with the token-state cache off, on with its
default maximum age (`AUTH_CACHE_MAX_AGE`, 5 s) and on with the smallest one allowed
(0.1 s): CPU per request (`time.process_time()`, the WSGI app called directly with a
prebuilt environ, no server) and database statements per request (a
`before_cursor_execute` counter, over every timed request: an entry past its maximum age
costs one more statement, which a short sample would miss).

    DATABASE_URL=postgresql://... .venv/bin/python -m bench.auth_cache > /dev/null

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


#: The configurations compared: AUTH_CACHE, and AUTH_CACHE_MAX_AGE (None: the default).
CONFIGURATIONS: list[tuple[bool, str | None]] = [(False, None), (True, None), (True, "0.1")]


def measure(database_url: str, cache: bool, max_age: str | None) -> tuple[float, float, float]:
    """Median µs of CPU per request over `ROUNDS`, statements per request, and the seconds
    the timed rounds took."""
    settings = {
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database_url,
        "AUTH_CACHE": str(cache).lower(),
        "PRUNE_INTERVAL_SECONDS": "0",
    }
    if max_age is not None:
        settings["AUTH_CACHE_MAX_AGE"] = max_age
    app = create_app(TestingConfig.from_env(settings))
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
    rounds = []
    began = time.monotonic()
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(REQUESTS):
            call()
        rounds.append((time.process_time() - started) / REQUESTS * 1e6)
    took = time.monotonic() - began
    event.remove(engine, "before_cursor_execute", count)
    if states is not None:
        states.stop()
    with app.app_context():
        db.engine.dispose()
    return statistics.median(rounds), sent[0] / (ROUNDS * REQUESTS), took


def main() -> None:
    database_url = os.environ["DATABASE_URL"]
    for cache, max_age in CONFIGURATIONS:
        cpu, statements, took = measure(database_url, cache, max_age)
        age = f", AUTH_CACHE_MAX_AGE={max_age or 'default'}" if cache else ""
        print(
            f"AUTH_CACHE={str(cache).lower()}{age}: {cpu:.0f} µs CPU per request, "
            f"{statements:.4f} statements per request ({took:.1f} s)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
