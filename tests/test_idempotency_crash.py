"""`Idempotency-Key` across a crash of the server process (a real one, SIGKILLed).

Whatever the point of the crash, a retry with the same key ends with exactly one
resource, and its answer is the one a successful first request would have had.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from backoffice.database import utcnow
from backoffice.extensions import db
from backoffice.idempotency.models import IdempotencyRecord
from backoffice.items.models import Item
from tests.support import TEST_SECRET_KEY, eventually

Answer = tuple[int, dict[str, str], bytes]
BODY = {"name": "Crash-proof", "quantity": 3}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(port: int, method: str, path: str, headers: dict[str, str], body: Any = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body) if body is not None else None
        if payload is not None:
            headers = {**headers, "Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def serve(
    database_url: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], int]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(crash_at: str = "") -> tuple[subprocess.Popen[bytes], int]:
        port = _free_port()
        env = {
            **os.environ,
            "APP_ENV": "testing",
            "SECRET_KEY": TEST_SECRET_KEY,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
            "INSTANCE_PATH": str(tmp_path),
            "CRASH_AT": crash_at,
            "PORT": str(port),
        }
        log = (tmp_path / f"server-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_server"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(process)
        deadline = time.monotonic() + 30
        while True:
            try:
                if request(port, "GET", "/health", {})[0] == 200:
                    return process, port
            except OSError:
                pass
            assert process.poll() is None, "the server did not start"
            assert time.monotonic() < deadline, "the server did not answer in time"
            time.sleep(0.1)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def items(in_db: Callable[..., Any]) -> int:
    return int(in_db(lambda: db.session.scalar(select(func.count()).select_from(Item))))


def create(port: int, auth: str, key: str) -> Answer:
    headers = {"Authorization": auth, "Idempotency-Key": key}
    return request(port, "POST", "/api/items", headers, BODY)


def retry_until_answered(port: int, auth: str, key: str) -> Answer:
    """Retry as a client would while the key is still held (409), with a deadline."""
    return eventually(
        lambda: create(port, auth, key), lambda answer: answer[0] != 409, timeout=30, interval=0.5
    )


def assert_is_the_item_answer(port: int, auth: str, answer: Answer) -> None:
    """The answer is what a successful first create would have been, for the item that
    exists now."""
    status, headers, body = answer
    created = json.loads(body)
    assert status == 201
    assert headers["Location"] == f"/api/items/{created['id']}"
    read_status, read_headers, read_body = request(
        port, "GET", headers["Location"], {"Authorization": auth}
    )
    assert read_status == 200
    assert json.loads(read_body) == created
    assert headers["ETag"] == read_headers["ETag"]
    assert created["name"] == BODY["name"]


@pytest.mark.parametrize("crash_at", ["before-commit", "after-commit"])
def test_a_retry_after_the_server_died_ends_with_exactly_one_item(
    serve, client, database_url, in_db, crash_at
):
    auth = client.environ_base["HTTP_AUTHORIZATION"]
    doomed, port = serve(crash_at)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        create(port, auth, "crash-1")
    assert doomed.wait(timeout=10) == -9  # it died by SIGKILL, where we asked
    assert items(in_db) == (1 if crash_at == "after-commit" else 0)

    _, port = serve()
    if crash_at == "before-commit" and database_url.startswith("sqlite"):
        # No row lock tells SQLite that the claim's request died: it is held until it
        # is old enough to be taken to be abandoned.
        assert create(port, auth, "crash-1")[0] == 409

        def abandon_long_ago() -> None:
            db.session.execute(
                update(IdempotencyRecord).values(created_at=utcnow() - timedelta(minutes=5))
            )
            db.session.commit()

        in_db(abandon_long_ago)
    answer = retry_until_answered(port, auth, "crash-1")
    assert_is_the_item_answer(port, auth, answer)
    assert answer[1].get("Idempotent-Replayed") == ("true" if crash_at == "after-commit" else None)
    again = create(port, auth, "crash-1")
    assert again[2] == answer[2]
    assert again[1]["Idempotent-Replayed"] == "true"
    assert items(in_db) == 1
