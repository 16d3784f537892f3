"""Login throttling through the server `make run` starts: `deploy/serve` with its
checked-in settings (two Granian worker processes) and the default rate-limit storage.
Counters in process memory let a client past the limit alternate 401/429 between the
workers; counted in the database, every attempt past the limit is 429 whichever worker
takes it (PRODUCT.md, login throttling)."""

from __future__ import annotations

import http.client
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import (
    PASSWORD,
    deployed,
    free_port,
    serve_environment,
    workers_started,
)

LIMIT = 5
#: A window no test run straddles (windows are clock-aligned): the count is the point here.
LOGIN_RATE_LIMIT = f"{LIMIT} per 1000 days"


@pytest.fixture
def server(app, database_url, tmp_path):
    """`deploy/serve` as `make run` starts it, on the test database; its port."""
    port = free_port()
    assert "RATELIMIT_STORAGE_URI" not in os.environ
    env = serve_environment(database_url, tmp_path, port, LOGIN_RATE_LIMIT=LOGIN_RATE_LIMIT)
    log = tmp_path / "serve.log"
    with deployed(env, port, log):
        assert workers_started(log) == 2, log.read_text()
        yield port


def log_in(port: int, email: str, password: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        body = json.dumps({"email": email, "password": password})
        connection.request(
            "POST", "/api/auth/token", body=body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_failed_logins_past_the_limit_are_all_429_across_granian_workers(server, member):
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: log_in(server, member.email, "wrong"), range(20)))
    assert Counter(statuses) == {401: LIMIT, 429: 20 - LIMIT}
    # Then only 429s, one connection after another (each may reach either worker).
    assert {log_in(server, member.email, "wrong") for _ in range(10)} == {429}
    assert log_in(server, member.email, PASSWORD) == 429
