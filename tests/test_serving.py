"""The production server's front (`backoffice.serving`), driven as Granian drives it: an
RSGI scope and protocol in, the answer handed to the protocol, around the real app.
(Through a real Granian, slow sockets and all: tests/test_isolation.py.)

`Scope`, `Headers` and `Protocol` below stand for Granian's objects (its RSGI interface,
spec 1.6): what it is asked here is what it answers there.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from backoffice.serving import LANE_FULL, AppThreads, Lane, ThreadedWSGI
from tests.support import PROBLEM, eventually

BODY = json.dumps({"name": "Gear", "quantity": 2}).encode()


class Headers:
    """Granian's header mapping: names lower-cased; `items()` leaves out values that are
    not visible ASCII (`HeaderValue::to_str` fails on them), `keys()` does not."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = [(name.lower(), value) for name, value in pairs]

    def items(self) -> list[tuple[str, str]]:
        return [(n, v) for n, v in self._pairs if v.isascii() and v.isprintable()]

    def keys(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self._pairs))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class Scope:
    method: str
    path: str
    headers: Headers
    query_string: str = ""
    proto: str = "http"
    http_version: str = "1.1"
    server: str = "127.0.0.1:5000"
    client: str = "127.0.0.1:50000"
    scheme: str = "http"


@dataclass
class Protocol:
    """The client's side: the body in pieces (a float is a pause), and what the front
    answered. `disconnect_after`: seconds after the answer starts that the client leaves."""

    pieces: list[bytes | float] = field(default_factory=list)
    disconnect_after: float | None = None
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    sent: list[bytes] = field(default_factory=list)
    read: int = 0  # pieces of the body the front read

    async def _chunks(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            if isinstance(piece, float):
                await asyncio.sleep(piece)
                continue
            self.read += 1
            yield piece

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def __call__(self) -> bytes:
        """The whole body (Granian reads it to its announced length)."""
        return b"".join([chunk async for chunk in self._chunks()])

    async def client_disconnect(self) -> None:
        if self.disconnect_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.disconnect_after or 0)

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._start(status, headers)
        self.sent.append(body)

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> Any:
        self._start(status, headers)
        protocol = self

        class Transport:
            async def send_bytes(self, data: bytes) -> None:
                protocol.sent.append(data)

        return Transport()

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        assert self.status == 0, "one answer per request"
        self.status, self.headers = status, {name.lower(): value for name, value in headers}

    @property
    def body(self) -> bytes:
        return b"".join(self.sent)

    @property
    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == PROBLEM
        return dict(json.loads(self.body))


@pytest.fixture
def front(app) -> ThreadedWSGI:
    return ThreadedWSGI(app, threads=2, body_timeout=0.5, max_body=app.config["MAX_CONTENT_LENGTH"])


def serve(front: ThreadedWSGI, scope: Scope, protocol: Protocol) -> Protocol:
    """Serve one request on an event loop of its own, in a thread of its own, as Granian
    would: this test's thread may already run a loop (Playwright's, in a process that ran
    a browser test before), and asyncio runs one loop per thread."""
    with ThreadPoolExecutor(1) as loop_thread:
        loop_thread.submit(asyncio.run, front.__rsgi__(scope, protocol)).result()
    return protocol


def request(client, method: str, path: str, **headers: str) -> Scope:
    sent = {"Host": "localhost", "Authorization": client.environ_base["HTTP_AUTHORIZATION"]}
    path, _, query = path.partition("?")
    return Scope(method, path, Headers(list({**sent, **headers}.items())), query)


def test_a_body_in_pieces_reaches_the_app_whole(front, client):
    scope = request(
        client,
        "POST",
        "/api/items",
        **{"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    done = serve(front, scope, Protocol([BODY[:5], 0.05, BODY[5:12], BODY[12:]]))
    assert done.status == 201, done.body
    item = json.loads(done.body)
    assert (item["name"], item["quantity"]) == ("Gear", 2)
    assert done.headers["location"] == f"/api/items/{item['id']}"
    assert client.get(f"/api/items/{item['id']}").status_code == 200


def test_a_body_not_sent_in_time_is_408_and_the_connection_closes(front, client):
    scope = request(
        client,
        "POST",
        "/api/items",
        **{"Content-Type": "application/json", "Content-Length": str(len(BODY))},
    )
    done = serve(front, scope, Protocol([BODY[:3], 0.3, BODY[3:6], 0.3, BODY[6:]]))
    assert done.status == 408
    assert done.headers["connection"] == "close"
    problem = done.problem
    assert problem["type"] == "/problems/request-timeout"
    assert problem["detail"] == "The request body did not arrive within 0.5 seconds."
    assert problem["request_id"] == done.headers["x-request-id"]
    assert client.get("/api/items").json["data"] == []  # nothing was created


@pytest.mark.parametrize("announced", [True, False, "and chunked"])
def test_a_body_over_the_limit_is_413_and_not_read_past_it(front, app, client, announced):
    limit = app.config["MAX_CONTENT_LENGTH"]
    piece = b" " * (64 * 1024)
    pieces: list[bytes | float] = [piece] * (limit // len(piece) + 4)
    length = {"Content-Length": str(len(piece) * len(pieces))} if announced is True else {}
    if announced == "and chunked":  # a small length beside chunked: chunked wins
        length = {"Content-Length": "5", "Transfer-Encoding": "chunked"}
    extra = length or {"Transfer-Encoding": "chunked"}
    scope = request(client, "POST", "/api/items", **{"Content-Type": "application/json", **extra})
    done = serve(front, scope, Protocol(pieces))
    assert done.status == 413
    assert done.problem["type"] == "/problems/request-entity-too-large"
    # Announced: nothing read at all; streamed: read up to just past the limit.
    assert done.read == (0 if announced is True else limit // len(piece) + 1)


def test_a_request_without_a_body_is_not_waited_for(front, client):
    protocol = Protocol([60.0])  # a client that would never send anything
    done = serve(front, request(client, "GET", "/api/items?limit=1"), protocol)
    assert done.status == 200
    assert done.read == 0


def test_the_path_query_and_repeated_headers_reach_the_app_as_a_wsgi_server_gives_them(
    front, client
):
    done = serve(front, request(client, "GET", "/api/items/é"), Protocol())
    assert done.status == 400
    assert "'é' is not a valid id" in done.problem["detail"]
    done = serve(front, request(client, "GET", "/api/items?limit=abc"), Protocol())
    assert done.status == 400
    assert done.problem["errors"][0]["field"] == "limit"


def test_the_environ_is_what_a_wsgi_server_would_give():
    seen: dict[str, Any] = {}

    def echo(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [("Content-Length", "0")])
        return [b""]

    headers = Headers([("Accept", "a/b"), ("Accept", "c/d"), ("Cookie", "x=1"), ("Cookie", "y=2")])
    scope = Scope("GET", "/a b/é", headers, "q=%C3%A9", client="[::1]:41000", server="[::1]:5000")
    assert (
        serve(ThreadedWSGI(echo, threads=1, body_timeout=1, max_body=10), scope, Protocol()).status
        == 204
    )
    assert seen["PATH_INFO"] == "/a b/é".encode().decode("latin-1")  # PEP 3333's bytes as text
    assert seen["QUERY_STRING"] == "q=%C3%A9"
    assert (seen["REMOTE_ADDR"], seen["REMOTE_PORT"]) == ("::1", "41000")
    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("::1", "5000")
    assert seen["HTTP_ACCEPT"] == "a/b,c/d"
    assert seen["HTTP_COOKIE"] == "x=1; y=2"
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["wsgi.url_scheme"] == "http"
    assert "CONTENT_LENGTH" not in seen  # no body announced, none read


def test_a_header_the_server_cannot_read_as_text_is_400_naming_it(front, client):
    scope = request(
        client,
        "POST",
        "/api/items",
        **{"Content-Type": "application/json", "Idempotency-Key": "clé"},
    )
    scope.headers = Headers([*scope.headers._pairs, ("content-length", str(len(BODY)))])
    done = serve(front, scope, Protocol([BODY]))
    assert done.status == 400
    assert (
        done.problem["detail"]
        == "The idempotency-key header holds characters other than visible ASCII."
    )
    assert client.get("/api/items").json["data"] == []


def test_a_lowercase_method_is_405_with_allow(front, client):
    done = serve(front, request(client, "get", "/api/items"), Protocol())
    assert done.status == 405
    assert set(done.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert done.problem["type"] == "/problems/method-not-allowed"


def test_a_stream_is_sent_piece_by_piece_and_closed_when_the_client_goes_away():
    closed = threading.Event()

    def streaming(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def pieces():
            try:
                for n in range(1000):
                    yield f"data: {n}\n\n".encode()
                    threading.Event().wait(0.01)
            finally:
                closed.set()

        return pieces()

    front = ThreadedWSGI(streaming, threads=1, body_timeout=1, max_body=10)
    done = serve(front, Scope("GET", "/", Headers([])), Protocol(disconnect_after=0.2))
    assert closed.is_set()  # the app's iterator was closed, not run to its end
    assert done.status == 200
    assert 2 < len(done.sent) < 100
    assert done.sent[0] == b"data: 0\n\n"


def test_an_app_that_fails_leaves_the_error_to_the_server():
    def failing(environ, start_response):
        raise RuntimeError("a bug")

    front = ThreadedWSGI(failing, threads=1, body_timeout=1, max_body=10)
    with pytest.raises(RuntimeError, match="a bug"):
        serve(front, Scope("GET", "/", Headers([])), Protocol())


# --- lanes ---------------------------------------------------------------------------

LOGIN = "/api/auth/token"


def login_lane(queue: int = 4) -> Lane:
    return Lane("login", prefixes=(LOGIN,), threads=1, queue=queue)


class Holding:
    """A WSGI app in front of `app`: a request to the lane's path that is not refused for a
    full lane waits until `release` is set (as a login waiting on the database would);
    every answer says which thread ran it."""

    def __init__(self, app) -> None:
        self.app = app
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] == LOGIN and LANE_FULL not in environ:
            self.entered.set()
            assert self.release.wait(30)

        def named(status, headers, exc_info=None):
            thread = threading.current_thread().name
            return start_response(status, [*headers, ("X-Thread", thread)], exc_info)

        return self.app(environ, named)


def in_background(front: ThreadedWSGI, scope: Scope) -> tuple[ThreadPoolExecutor, Any]:
    """`serve(front, scope, ...)` started in a thread of its own: the pool and the future."""
    pool = ThreadPoolExecutor(1)
    return pool, pool.submit(serve, front, scope, Protocol([b"{}"]))


def login(client) -> Scope:
    body = {"Content-Type": "application/json", "Content-Length": "2"}
    return request(client, "POST", LOGIN, **body)


def test_a_lanes_requests_run_on_its_own_threads_and_every_other_on_the_shared_ones(app, client):
    front = ThreadedWSGI(
        Holding(app), threads=4, body_timeout=1, max_body=1024, lanes=[login_lane()]
    )
    front.wsgi_app.release.set()
    done = serve(front, login(client), Protocol([b"{}"]))
    assert done.status == 422  # the app's own answer: no email, no password
    assert done.headers["x-thread"] == "login-0"
    done = serve(front, request(client, "GET", "/api/items"), Protocol())
    assert done.status == 200
    assert done.headers["x-thread"].startswith("app-")
    # Its thread rests 4 times as long as it worked: a fifth of the time, as any of the 5.
    assert [threads.rest for _, threads in front.lanes] == [4]


def test_with_the_lanes_thread_held_every_other_request_is_answered(app, client):
    holding = Holding(app)
    front = ThreadedWSGI(holding, threads=1, body_timeout=1, max_body=1024, lanes=[login_lane()])
    logins = [in_background(front, login(client)) for _ in range(3)]
    try:
        assert holding.entered.wait(10)
        for _ in range(5):  # one shared thread, and the lane's held: each answered anyway
            done = serve(front, request(client, "GET", "/api/items"), Protocol())
            assert done.status == 200
        assert not any(future.done() for _, future in logins)
    finally:
        holding.release.set()
    for pool, future in logins:
        assert future.result(timeout=10).status == 422  # the app's own answer, once let go
        pool.shutdown()


def test_past_the_lanes_queue_a_request_is_503_server_busy_at_once(app, client):
    holding = Holding(app)
    front = ThreadedWSGI(
        holding, threads=1, body_timeout=1, max_body=1024, lanes=[login_lane(queue=1)]
    )
    lane = front.lanes[0][1]
    held = [in_background(front, login(client))]
    try:
        assert holding.entered.wait(10)  # the lane's one thread took the first
        held.append(in_background(front, login(client)))
        eventually(lane.waiting, until=lambda waiting: waiting == 1, timeout=10)
        done = serve(front, login(client), Protocol([b"{}"]))
        assert not any(future.done() for _, future in held)
    finally:
        holding.release.set()
    assert done.status == 503
    assert done.headers["retry-after"] == "1"
    assert done.headers["x-thread"].startswith("app-")  # refused on a shared thread
    problem = done.problem
    assert problem["type"] == "/problems/server-busy"
    assert problem["detail"] == "Too many login requests are waiting on this server; retry shortly."
    assert problem["request_id"] == done.headers["x-request-id"]
    for pool, future in held:
        assert future.result(timeout=10).status == 422
        pool.shutdown()


def test_a_resting_thread_sleeps_in_proportion_to_the_cpu_time_its_job_took():
    threads = AppThreads(1, "lane", rest=3)
    cpu = 0.02

    def burn() -> float:
        started = time.thread_time()
        while time.thread_time() - started < cpu:
            pass
        return time.perf_counter()

    async def one_after_the_other() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        first, second = threads.run(loop, burn), threads.run(loop, time.perf_counter)
        return await first, await second

    with ThreadPoolExecutor(1) as loop_thread:
        ended, started = loop_thread.submit(asyncio.run, one_after_the_other()).result()
    assert started - ended >= 3 * cpu  # a sleep is never shorter than asked


@pytest.mark.parametrize("rest", [0, 1])
def test_a_thread_lets_go_of_a_job_once_it_has_run(rest):
    """Granian ends a streamed answer only when its transport is let go: a thread that kept
    its last job until the next one left a chat stream open (tests/tools/test_chat_granian.py)."""
    threads = AppThreads(1, "app", rest=rest)

    class Transport:
        pass

    transport = Transport()
    gone = weakref.ref(transport)

    async def run_once(held: Transport) -> None:
        await threads.run(asyncio.get_running_loop(), lambda: held)

    with ThreadPoolExecutor(1) as loop_thread:
        loop_thread.submit(asyncio.run, run_once(transport)).result()
    del transport
    eventually(lambda: gone() is None, timeout=10, interval=0.01)
