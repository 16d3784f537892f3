"""The login lane (`backoffice.lanes`), on the production server: `deploy/serve` (Granian,
the front of `backoffice.serving`) reached directly, with real sockets.

- Logins held on the lane's thread (waiting on the database, as a storm's would wait for
  the interpreter) leave item reads answering: they take none of the shared threads.
- Past the lane's queue a login is 503 `server-busy` with `Retry-After`, at once.
- A member logs in with the right password while another address storms the endpoint
  with wrong ones and is refused with 429.

One worker, two shared threads and a queue of eight, so every count below is exact: which
worker a connection reaches is not left to chance. A login is held by locking the table
that counts failed logins (PostgreSQL's `LOCK TABLE`: the lane's thread waits on it, the
reads never touch it); the storm test runs on every backend.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support import (
    PROBLEM,
    Server,
    eventually,
    serving_module,
)

SHARED_THREADS = 2
QUEUE = 8
#: Wrong passwords that mostly get 429: the storm's connections, each its own thread.
STORM_CONNECTIONS = 6


@pytest.fixture(scope="module")
def server(app, database_url, tmp_path_factory) -> Iterator[Server]:
    with serving_module(
        database_url,
        tmp_path_factory.mktemp("login-lane"),
        workers=1,
        SERVER_THREADS=str(SHARED_THREADS),
        CHAT_CALLS_PER_PROCESS="1",  # below SERVER_THREADS, as start-up requires
        SERVER_AUTH_THREADS="1",
        SERVER_AUTH_QUEUE=str(QUEUE),
    ) as server:
        yield server


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == PROBLEM
        return dict(json.loads(self.body))


def post_login(port: int, email: str, password: str, source: str = "127.0.0.1") -> Answer:
    """`POST /api/auth/token` on a connection of its own, from the loopback address
    `source` (the login limit counts per address)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    with closing(connection):
        body = json.dumps({"email": email, "password": password})
        connection.request(
            "POST", "/api/auth/token", body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, headers, response.read())


def read(port: int, authorization: str, path: str) -> int:
    """One read on a connection of its own; its status. A read held behind the logins
    would time out here (and fail the test), not wait for them."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    with closing(connection):
        connection.request("GET", path, headers={"Authorization": authorization})
        response = connection.getresponse()
        response.read()
        return response.status


@contextmanager
def failed_logins_locked(database_url: str) -> Iterator[Any]:
    """The failed-login counters locked (PostgreSQL): a login waits on them, in the lane's
    thread, until the block ends. Yields a connection to watch the waiting backends."""
    engine = create_engine(database_url)
    watcher = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.begin() as lock, watcher.connect() as watch:
            lock.execute(text("LOCK TABLE rate_limit_counters IN ACCESS EXCLUSIVE MODE"))
            yield watch
    finally:
        engine.dispose()
        watcher.dispose()


def waiting_on_the_lock(watch: Any) -> int:
    """Statements on the failed-login counters that wait for the lock."""
    return int(
        watch.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%rate_limit_counters%'"
            )
        )
    )


#: These hold the lane with a PostgreSQL table lock: they run on PostgreSQL alone (not
#: generated for SQLite at all, rather than skipped there).
on_postgresql_only = pytest.mark.parametrize(
    "database_url",
    ["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [],
    indirect=True,
)


def reader(as_user, make_user, client) -> tuple[str, str]:
    """Another user's bearer token, and an item they read."""
    response = client.post("/api/items", json={"name": "widget", "quantity": 3})
    assert response.status_code == 201
    reading = as_user(make_user())
    return str(reading.environ_base["HTTP_AUTHORIZATION"]), response.headers["Location"]


@on_postgresql_only
def test_logins_holding_the_lane_leave_reads_answering(
    server, database_url, as_user, make_user, client
):
    authorization, item = reader(as_user, make_user, client)
    with ThreadPoolExecutor(1 + QUEUE) as pool, failed_logins_locked(database_url) as watch:
        held = [pool.submit(post_login, server.port, "a@example.com", "wrong", "127.0.0.21")]
        eventually(lambda: waiting_on_the_lock(watch), until=lambda n: n >= 1, timeout=30)
        held += [
            pool.submit(post_login, server.port, "a@example.com", "wrong", "127.0.0.21")
            for _ in range(QUEUE)
        ]
        # More logins than shared threads are in flight: on those threads, they would hold
        # every one of them, and no read would be answered until the lock ends.
        statuses = [read(server.port, authorization, item) for _ in range(20)]
        assert statuses == [200] * 20
        assert not any(login.done() for login in held)
    answers = [login.result(timeout=30) for login in held]
    # Let go, every one is answered: 401, and 429 past the limit of 5 a minute.
    assert {answer.status for answer in answers} <= {401, 429}
    assert answers[0].status == 401


@on_postgresql_only
def test_past_the_lanes_queue_a_login_is_503_server_busy_at_once(server, database_url):
    more = QUEUE + 4
    with ThreadPoolExecutor(1 + more) as pool, failed_logins_locked(database_url) as watch:
        first = pool.submit(post_login, server.port, "b@example.com", "wrong", "127.0.0.22")
        eventually(lambda: waiting_on_the_lock(watch), until=lambda n: n >= 1, timeout=30)
        rest = [
            pool.submit(post_login, server.port, "b@example.com", "wrong", "127.0.0.22")
            for _ in range(more)
        ]
        # The lane's thread is held: at most QUEUE of them wait, the others are refused
        # while it still is.
        refused = eventually(
            lambda: [login for login in rest if login.done()],
            until=lambda done: len(done) >= more - QUEUE,
            timeout=30,
        )
        assert not first.done()
    for answer in (login.result() for login in refused):
        assert answer.status == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.problem["type"] == "/problems/server-busy"
        assert answer.problem["request_id"] == answer.headers["x-request-id"]
    assert first.result(timeout=30).status == 401
    waited = [login.result(timeout=30) for login in rest if login not in refused]
    assert len(waited) <= QUEUE
    assert {answer.status for answer in waited} <= {401, 429, 503}


def test_the_right_password_logs_in_while_another_address_storms_the_login(server, make_user):
    member = make_user()
    stop = threading.Event()
    seen: dict[int, int] = {}
    refusals: list[Answer] = []

    def storm() -> None:
        while not stop.is_set():
            answer = post_login(server.port, member.email, "not-the-password")
            seen[answer.status] = seen.get(answer.status, 0) + 1
            if answer.status == 429 and not refusals:
                refusals.append(answer)

    with ThreadPoolExecutor(STORM_CONNECTIONS) as pool:
        storming = [pool.submit(storm) for _ in range(STORM_CONNECTIONS)]
        try:
            # The storm is past the limit (5 failures a minute from its address) ...
            eventually(lambda: seen.get(429, 0), until=lambda n: n >= 20, timeout=60)
            # ... and the member, from another address, still gets in.
            started = time.monotonic()
            answer = post_login(server.port, member.email, member.password, "127.0.0.2")
            waited = time.monotonic() - started
        finally:
            stop.set()
        for future in storming:
            future.result(timeout=30)
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["token_type"] == "bearer"
    assert waited < 10
    assert set(seen) <= {401, 429}
    refusal = refusals[0]
    assert int(refusal.headers["retry-after"]) >= 1
    assert refusal.problem["type"] == "/problems/too-many-requests"
