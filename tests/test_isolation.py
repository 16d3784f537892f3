"""Isolation (PRODUCT §1), measured on the production server: `deploy/serve` (Granian, two
workers, the front of `backoffice.serving`), reached directly, with real slow sockets and a
model server that streams slowly.

- Clients that send their body a byte at a time hold no thread: everyone else is served
  meanwhile, and each of them gets 408 once BODY_READ_TIMEOUT has passed.
- Members holding every chat call the service lets them (per user, per process) leave
  another user's item reads answering in milliseconds; the calls past the bounds are
  refused at once (503 `model-server-busy`, 429 `too-many-chat-calls`), never queued.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing

import pytest

from bench.fake_llm import FakeLLM, serving
from tests.support import (
    Server,
    serving_module,
)

WORKERS = 2
CALLS_PER_PROCESS = 2
CALLS_PER_USER = 2
BODY_READ_TIMEOUT = 3.0
#: What "never waits for a chat or a slow client" means, for a read that takes ~5 ms.
READ_P99_MS = 100.0
READS = 200


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeLLM]:
    with serving() as server:
        yield server


@pytest.fixture(scope="module")
def server(app, database_url, upstream, tmp_path_factory) -> Iterator[Server]:
    with serving_module(
        database_url,
        tmp_path_factory.mktemp("isolation"),
        workers=WORKERS,
        BODY_READ_TIMEOUT=str(BODY_READ_TIMEOUT),
        CHAT_CALLS_PER_PROCESS=str(CALLS_PER_PROCESS),
        CHAT_CALLS_PER_USER=str(CALLS_PER_USER),
        CHAT_RATE_LIMIT="1000 per minute",
        LLM_BASE_URL=upstream.url,
        LLM_MODEL="fake-model",
        LLM_TIMEOUT="10",
    ) as server:
        yield server


@pytest.fixture
def fake_llm(upstream: FakeLLM) -> Iterator[FakeLLM]:
    upstream.reset()
    yield upstream
    upstream.reset()


def bearer(client) -> str:
    return str(client.environ_base["HTTP_AUTHORIZATION"])


def reader(as_user, make_user, client) -> tuple[str, str]:
    """Another user's credentials, and an item they read."""
    response = client.post("/api/items", json={"name": "widget", "quantity": 3})
    assert response.status_code == 201
    return bearer(as_user(make_user())), response.headers["Location"]


def timed_reads(port: int, authorization: str, path: str, count: int = READS) -> list[float]:
    """`count` reads one after another on one keep-alive connection; each one's
    milliseconds. Every one must be a 200."""
    latencies = []
    with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) as connection:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", path, headers={"Authorization": authorization})
            response = connection.getresponse()
            response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status == 200
    return latencies


def p99(latencies: list[float]) -> float:
    return sorted(latencies)[int(len(latencies) * 0.99) - 1]


# --- slow bodies ---------------------------------------------------------------------


class SlowBody:
    """A client that announces a body and sends it a byte every `interval` seconds."""

    def __init__(self, port: int, interval: float = 0.5, length: int = 1000) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.socket.sendall(
            b"POST /api/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n" + f"Content-Length: {length}\r\n\r\n{{".encode()
        )
        self.answered = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self.answered.wait(self._interval):
            try:
                self.socket.sendall(b" ")
            except OSError:
                return  # the server closed the connection, as it does after a 408

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The server's answer: status, headers (lower-cased names), body."""
        response = http.client.HTTPResponse(self.socket)
        response.begin()
        self.answered.set()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()

    def close(self) -> None:
        self.answered.set()
        self.socket.close()


def test_slow_bodies_hold_no_thread_and_are_answered_408(server, as_user, make_user, client):
    authorization, item = reader(as_user, make_user, client)
    baseline = timed_reads(server.port, authorization, item, 20)
    threads = WORKERS * 4  # every thread of both workers, twice over
    with ExitStack() as stack:
        started = time.monotonic()
        slow = [SlowBody(server.port) for _ in range(2 * threads)]
        for client_ in slow:
            stack.callback(client_.close)
        latencies = timed_reads(server.port, authorization, item)
        reads_done = time.monotonic() - started
        assert reads_done < BODY_READ_TIMEOUT  # measured while every slow client was sending
        assert p99(latencies) < READ_P99_MS, (p99(latencies), max(latencies), baseline)
        for client_ in slow:
            status, headers, body = client_.answer()
            assert status == 408
            assert headers["content-type"] == "application/problem+json"
            assert headers["connection"] == "close"
            problem = json.loads(body)
            assert problem["type"] == "/problems/request-timeout"
            assert problem["instance"] == "/api/auth/token"
            assert str(BODY_READ_TIMEOUT).rstrip("0").rstrip(".") in problem["detail"]
        # Answered once the deadline passed, not before, and not long after.
        assert BODY_READ_TIMEOUT <= time.monotonic() - started < BODY_READ_TIMEOUT + 5


# --- chat streams ---------------------------------------------------------------------


def open_stream(port: int, authorization: str, words: int) -> tuple[int, object]:
    """Start a streamed chat; its status and, if 200, the open connection (else the
    problem body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    message = " ".join(["word"] * words)
    connection.request(
        "POST",
        "/api/chat",
        body=json.dumps({"message": message, "stream": True}),
        headers={"Authorization": authorization, "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    if response.status != 200:
        problem = (json.loads(response.read()), response.getheader("Retry-After"))
        connection.close()
        return response.status, problem
    assert response.readline().startswith(b"data: ")  # the stream is flowing
    return 200, (connection, response)


def test_members_holding_every_chat_place_leave_reads_answering(
    server, fake_llm, as_user, make_user, client
):
    authorization, item = reader(as_user, make_user, client)
    fake_llm.delay = 0.5  # a delta every half second, for as long as the test needs
    members = [bearer(as_user(make_user())) for _ in range(4)]
    opened: dict[str, list[object]] = {member: [] for member in members}
    refused: list[tuple[int, object]] = []
    with ExitStack() as stack:
        # The members ask, one call each per round, until every place of both processes
        # is taken (which process a connection reaches is the kernel's choice: asking
        # again may reach the other one). Each holds CALLS_PER_USER at most.
        for _ in range(10):
            for member in members:
                status, answer = open_stream(server.port, authorization=member, words=200)
                if status == 200:
                    connection, _response = answer  # type: ignore[misc]
                    stack.callback(connection.close)
                    opened[member].append(answer)
                else:
                    refused.append((status, answer))
            if sum(map(len, opened.values())) == WORKERS * CALLS_PER_PROCESS:
                break
        open_now = sum(map(len, opened.values()))
        assert open_now == WORKERS * CALLS_PER_PROCESS
        assert all(len(calls) <= CALLS_PER_USER for calls in opened.values())
        for status, (problem, retry_after) in refused:  # type: ignore[misc]
            assert (status, problem["type"]) in {
                (503, "/problems/model-server-busy"),
                (429, "/problems/too-many-chat-calls"),
            }
            assert int(retry_after) >= 1
        # Every place is taken: the next call, whoever asks, is refused at once.
        started = time.monotonic()
        status, _answer = open_stream(server.port, authorization=members[0], words=5)
        assert status in {429, 503}
        assert time.monotonic() - started < 1

        latencies = timed_reads(server.port, authorization, item)
        assert p99(latencies) < READ_P99_MS, (p99(latencies), max(latencies))
        # The streams were open all along: each still has deltas to send.
        for calls in opened.values():
            for _connection, response in calls:  # type: ignore[misc]
                assert response.readline() in {b"\n", b'data: {"delta":"word "}\n'}


# --- what Granian answers itself ---------------------------------------------------------


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send `request` as is; everything the server sends back before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400 Bad Request"),
        (b"GET /health HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", b"400 Bad Request"),
        (b"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", b"400 Bad"),
        # Past any head hyper can complete: it checks its 400 KB limit before each read, but
        # a read may take up to its size again (reads double from 8 KB while they come back
        # full), so a head of 408 to ~920 KB is 431 or served depending on how fast it
        # arrives; 500 KB was answered 200 about half the time.
        (
            # hyper's 400 KB is a soft bound: one read may take the buffer past it, and a
            # header block complete by then is served (a 500 KB one was, now and then).
            # 2 MB is past the buffer plus any one read.
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n",
            b"431 Request Header Fields Too Large",
        ),
    ],
    ids=["request-line", "version", "content-length", "headers-too-large"],
)
def test_what_granian_refuses_itself_is_an_empty_answer_and_a_closed_connection(
    server, request_, status
):
    """As docs/operations/deployment.md says: hyper's own answers, which no app sees."""
    head, _, body = raw_exchange(server.port, request_).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status)
    assert b"connection: close" in head.lower()
    assert b"content-length: 0" in head.lower()
    assert body == b""


def test_a_lowercase_method_reaches_the_app_and_is_405(server):
    answer = raw_exchange(
        server.port, b"get /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 Method Not Allowed")
    assert b"\r\nallow: GET, HEAD, OPTIONS, POST" in head
    assert json.loads(body)["type"] == "/problems/method-not-allowed"


def test_a_header_granian_cannot_read_as_text_is_400_naming_it(server):
    """Granian's RSGI headers leave out a value that is not visible ASCII: the front
    notices, and the app refuses the request rather than act as if it had not been sent."""
    answer = raw_exchange(
        server.port,
        b"POST /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nIdempotency-Key: cl\xc3\xa9\r\n"
        b"Content-Length: 2\r\n\r\n{}",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request")
    assert json.loads(body)["detail"] == (
        "The idempotency-key header holds characters other than visible ASCII."
    )
