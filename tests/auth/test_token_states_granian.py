"""The token-state cache across real server processes: `deploy/serve` (two Granian
workers) on PostgreSQL. A credential used in both workers, then ended by a request one
worker answers (logout, password change, deactivation, API-key revocation): the worker
that answered refuses it at once, the other within a bound, measured here (poll with a
deadline; the delays are printed, `-s` shows them)."""

from __future__ import annotations

import http.client
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from backoffice.auth.token_states import APPLICATION_NAME
from tests.support import (
    PASSWORD,
    deployed,
    eventually,
    free_port,
    serve_environment,
)

on_postgresql_only = pytest.mark.parametrize(
    "database_url",
    ["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [],
    indirect=True,
)
DIVIDE = "/api/divide?a=1&b=2"
TRIALS = 3
#: What this test holds every other worker to; docs/api/auth-and-users.md states the
#: measured figures.
BOUND_SECONDS = 1.0


@pytest.fixture
def server(app, database_url, tmp_path):
    """`deploy/serve` as `make run` starts it (two Granian workers), on the test database."""
    port = free_port()
    env = serve_environment(database_url, tmp_path, port, LOG_LEVEL="WARNING")
    try:
        with deployed(env, port, tmp_path / "serve.log"):
            yield port
    finally:
        Connection.close_all()


class Connection:
    """One keep-alive HTTP connection: every request on it reaches the same worker."""

    opened: list[Connection] = []

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        Connection.opened.append(self)

    @classmethod
    def close_all(cls) -> None:
        while cls.opened:
            cls.opened.pop().http.close()

    def send(
        self, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        sent = {**headers, **({"Content-Type": "application/json"} if data else {})}
        self.http.request(method, path, body=data, headers=sent)
        response = self.http.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


def server_listeners(database) -> int:
    """Listener connections of the server's workers (not of this test process's apps)."""
    own = f"{APPLICATION_NAME} pid={os.getpid()}"
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE :listener AND application_name <> :own"
    )
    with database.connect() as connection:
        return int(
            connection.execute(query, {"listener": f"{APPLICATION_NAME}%", "own": own}).scalar_one()
        )


def one_connection_per_worker(port: int, database, token: dict[str, str]) -> list[Connection]:
    """Connections known to reach different workers: a worker starts its listener on its
    first authenticated request, so a connection whose first request adds a listener is
    on a worker none of the others reached."""
    found: list[Connection] = []
    deadline = time.monotonic() + 60
    while len(found) < 2:
        assert time.monotonic() < deadline, "the server's two workers were not both reached"
        for known in found:  # kept busy: Granian closes a connection idle for 10 s
            assert known.send("GET", "/health", {})[0] == 200
        connection = Connection(port)
        before = server_listeners(database)
        assert connection.send("GET", DIVIDE, token)[0] == 200
        try:
            eventually(
                lambda: server_listeners(database), lambda n, before=before: n > before, timeout=2
            )
        except AssertionError:
            connection.http.close()  # a worker already found
            continue
        found.append(connection)
    return found


def log_in(connection: Connection, email: str, password: str = PASSWORD) -> dict[str, str]:
    status, body = connection.send(
        "POST", "/api/auth/token", {}, {"email": email, "password": password}
    )
    assert status == 200, body
    return {"Authorization": f"Bearer {body['access_token']}"}


def refused_after(
    serving: Connection, other: Connection, credential: dict[str, str], end: Callable[[], None]
) -> float:
    """End the credential through `serving`; it is refused there at once; seconds until
    `other` (another worker) refuses it."""
    for connection in (serving, other, serving, other):  # used, and kept, in both workers
        assert connection.send("GET", DIVIDE, credential)[0] == 200
    end()
    answered = time.monotonic()
    assert serving.send("GET", DIVIDE, credential)[0] == 401
    eventually(
        lambda: other.send("GET", DIVIDE, credential)[0],
        lambda s: s == 401,
        timeout=BOUND_SECONDS,
        interval=0,
    )
    delay = time.monotonic() - answered
    assert {other.send("GET", DIVIDE, credential)[0] for _ in range(3)} == {401}
    assert serving.send("GET", DIVIDE, credential)[0] == 401
    return delay


@on_postgresql_only
def test_every_worker_refuses_an_ended_credential_within_the_bound(server, database, make_user):
    admin = make_user(role="admin")
    probe = Connection(server)
    serving, other = one_connection_per_worker(server, database, log_in(probe, admin.email))
    admin_token = log_in(serving, admin.email)
    delays: dict[str, list[float]] = {}

    def trial(scenario: str) -> None:
        account = make_user()
        token = log_in(serving, account.email)
        if scenario == "logout":
            credential = token
            end = lambda: serving.send("POST", "/api/auth/logout", token)  # noqa: E731
        elif scenario == "password change":
            credential = token
            change = {"password": "a brand new secret", "current_password": PASSWORD}
            end = lambda: serving.send("PATCH", f"/api/users/{account.id}", token, change)  # noqa: E731
        elif scenario == "deactivation":
            credential = token
            end = lambda: serving.send(  # noqa: E731
                "PATCH", f"/api/users/{account.id}", admin_token, {"active": False}
            )
        else:
            status, key = serving.send(
                "POST", "/api/auth/api-keys", token, {"name": "sync", "scopes": ["tools"]}
            )
            assert status == 201
            credential = {"X-API-Key": key["key"]}
            end = lambda: serving.send("DELETE", f"/api/auth/api-keys/{key['id']}", token)  # noqa: E731
        ended = []

        def end_and_check() -> None:
            ended.append(end())
            assert ended[0][0] in (200, 204), ended

        delays.setdefault(scenario, []).append(
            refused_after(serving, other, credential, end_and_check)
        )

    for _ in range(TRIALS):
        for scenario in ("logout", "password change", "deactivation", "API-key revocation"):
            trial(scenario)
    every = [delay for measured in delays.values() for delay in measured]
    for scenario, measured in delays.items():
        print(
            f"{scenario}: other worker refused after max {max(measured) * 1000:.1f} ms, "
            f"median {statistics.median(measured) * 1000:.1f} ms ({len(measured)} trials)"
        )
    print(f"all: max {max(every) * 1000:.1f} ms, median {statistics.median(every) * 1000:.1f} ms")
    assert max(every) < BOUND_SECONDS
