"""The chat stream through the production server (Granian, started by `deploy/serve`):
events reach the client while the model server is still answering, and a client that
hangs up ends the upstream request."""

from __future__ import annotations

import http.client
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.tools.models import ChatUsage
from bench.fake_llm import FakeLLM, serving
from tests.support import LLM_KEY, MODEL, TEST_SECRET_KEY, deployed, eventually, free_port

STREAM = json.dumps({"message": "count the red widgets", "stream": True})


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeLLM]:
    """One fake model server for the module's Granian server (reset for every test)."""
    with serving() as server:
        yield server


@pytest.fixture(scope="module")
def granian(app, database_url, upstream, tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """`deploy/serve` (Granian, one worker) on the test database; its port and log file.
    Started once per module: importing the app takes seconds."""
    port = free_port()
    tmp_path = tmp_path_factory.mktemp("granian")
    log = tmp_path / "granian.log"
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "APP_ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "INSTANCE_PATH": str(tmp_path),
        # deploy/serve empties its metrics directory: never this test process's.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LLM_BASE_URL": upstream.url,
        "LLM_MODEL": MODEL,
        "LLM_API_KEY": LLM_KEY,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GRANIAN_WORKERS": "1",
    }
    with deployed(env, port, log, timeout=60):
        yield port, log


@pytest.fixture
def fake_llm(upstream: FakeLLM) -> Iterator[FakeLLM]:
    upstream.reset()
    yield upstream
    upstream.reset()


def _open_stream(port: int, token: str) -> tuple[http.client.HTTPConnection, Iterator[str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": token, "Content-Type": "application/json"}
    connection.request("POST", "/api/chat", body=STREAM, headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    return connection, (line.decode() for line in iter(response.readline, b""))


def _data_lines(lines: Iterator[str], count: int) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        line = next(lines)
        if line.startswith("data: "):
            found.append(line.strip())
    return found


def test_events_cross_granian_as_they_arrive_not_when_the_answer_is_complete(
    granian, fake_llm, client, in_db
):
    port, log = granian
    fake_llm.pause_after = 2
    connection, lines = _open_stream(port, client.environ_base["HTTP_AUTHORIZATION"])
    try:
        first = _data_lines(lines, 2)
        assert first == ['data: {"delta":"You "}', 'data: {"delta":"said: "}']
        assert not fake_llm.resume.is_set()  # the model server has not finished
        fake_llm.resume.set()
        rest = [line.strip() for line in lines if line.strip()]
    finally:
        connection.close()
    assert rest[-1] == "data: [DONE]"
    assert "event: usage" in rest
    rows = in_db(lambda: list(db.session.scalars(select(ChatUsage))))
    assert [(row.outcome, row.total_tokens) for row in rows] == [("completed", 10)]
    assert LLM_KEY not in log.read_text()


def test_a_client_that_hangs_up_ends_the_upstream_request(granian, fake_llm, client, in_db):
    port, _log = granian
    fake_llm.pause_after = 1
    fake_llm.delay = 0.05
    connection, lines = _open_stream(port, client.environ_base["HTTP_AUTHORIZATION"])
    assert _data_lines(lines, 1) == ['data: {"delta":"You "}']
    connection.close()
    fake_llm.resume.set()
    # Granian's next write fails, it closes our response, and we close the upstream one.
    eventually(lambda: fake_llm.disconnects, lambda count: count == 1, timeout=15)
    outcomes = eventually(
        lambda: in_db(lambda: [row.outcome for row in db.session.scalars(select(ChatUsage))]),
        timeout=15,
    )
    assert outcomes == ["cancelled"]
