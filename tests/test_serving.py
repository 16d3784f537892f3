"""The production server's front (`backoffice.serving`), driven as Granian drives it: ASGI
messages in, ASGI messages out, around the real app. (Through a real Granian, slow
sockets and all: tests/test_isolation.py.)"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from backoffice.serving import ThreadedWSGI
from tests.support import PROBLEM

BODY = json.dumps({"name": "Gear", "quantity": 2}).encode()


class Exchange:
    """One request: what the client sends (pieces of body, with pauses), and what the
    front sent back."""

    def __init__(self, pieces: list[bytes | float], *, disconnect_after: float | None = None):
        self.pieces = list(pieces)
        self.sent: list[dict[str, Any]] = []
        self.disconnect_after = disconnect_after
        self.disconnected = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        while self.pieces:
            piece = self.pieces.pop(0)
            if isinstance(piece, float):
                await asyncio.sleep(piece)
                continue
            return {"type": "http.request", "body": piece, "more_body": bool(self.pieces)}
        if self.disconnect_after is not None:
            await asyncio.sleep(self.disconnect_after)
            self.disconnected.set()
        else:
            await asyncio.Event().wait()  # a client that stays connected
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {name.decode(): value.decode() for name, value in self.sent[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.sent[1:])


def scope(method: str, path: str, headers: dict[str, str], query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 5000),
    }


@pytest.fixture
def front(app) -> Iterator[ThreadedWSGI]:
    served = ThreadedWSGI(
        app, threads=2, body_timeout=0.5, max_body=app.config["MAX_CONTENT_LENGTH"]
    )
    yield served
    served._pool.shutdown()


def serve(front: ThreadedWSGI, request: dict[str, Any], exchange: Exchange) -> Exchange:
    asyncio.run(front(request, exchange.receive, exchange.send))
    return exchange


def authorized(client, **headers: str) -> dict[str, str]:
    return {
        "Host": "localhost",
        "Authorization": client.environ_base["HTTP_AUTHORIZATION"],
        **headers,
    }


def test_a_body_in_pieces_reaches_the_app_whole(front, client):
    headers = authorized(
        client, **{"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    )
    pieces: list[bytes | float] = [BODY[:5], 0.05, BODY[5:12], BODY[12:]]
    done = serve(front, scope("POST", "/api/items", headers), Exchange(pieces))
    assert done.status == 201, done.body
    item = json.loads(done.body)
    assert (item["name"], item["quantity"]) == ("Gear", 2)
    assert client.get(f"/api/items/{item['id']}").status_code == 200


def test_a_body_not_sent_in_time_is_408_and_the_connection_closes(front, client):
    headers = authorized(
        client, **{"Content-Type": "application/json", "Content-Length": str(len(BODY))}
    )
    pieces: list[bytes | float] = [BODY[:3], 0.3, BODY[3:6], 0.3, BODY[6:]]
    done = serve(front, scope("POST", "/api/items", headers), Exchange(pieces))
    assert done.status == 408
    assert done.headers["content-type"] == PROBLEM
    assert done.headers["connection"] == "close"
    problem = json.loads(done.body)
    assert problem["type"] == "/problems/request-timeout"
    assert problem["detail"] == "The request body did not arrive within 0.5 seconds."
    assert problem["request_id"] == done.headers["x-request-id"]
    assert client.get("/api/items").json["data"] == []  # nothing was created


@pytest.mark.parametrize("announced", [True, False])
def test_a_body_over_the_limit_is_413_and_not_read_past_it(front, app, client, announced):
    limit = app.config["MAX_CONTENT_LENGTH"]
    piece = b" " * (64 * 1024)
    pieces: list[bytes | float] = [piece] * (limit // len(piece) + 4)
    length = {"Content-Length": str(len(piece) * len(pieces))} if announced else {}
    headers = authorized(client, **{"Content-Type": "application/json", **length})
    exchange = Exchange(pieces)
    done = serve(front, scope("POST", "/api/items", headers), exchange)
    assert done.status == 413
    assert json.loads(done.body)["type"] == "/problems/request-entity-too-large"
    # Announced: nothing read at all; streamed: read up to just past the limit.
    assert len(exchange.pieces) == (len(pieces) if announced else 3)


def test_the_path_query_and_repeated_headers_reach_the_app_as_a_wsgi_server_gives_them(
    front, client
):
    headers = authorized(client)
    done = serve(front, scope("GET", "/api/items/é", headers), Exchange([b""]))
    assert done.status == 400
    assert "'é' is not a valid id" in json.loads(done.body)["detail"]
    done = serve(front, scope("GET", "/api/items", headers, b"limit=abc"), Exchange([b""]))
    assert done.status == 400
    assert json.loads(done.body)["errors"][0]["field"] == "limit"


def test_a_lowercase_method_is_405_with_allow(front, client):
    done = serve(front, scope("get", "/api/items", authorized(client)), Exchange([b""]))
    assert done.status == 405
    assert set(done.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert json.loads(done.body)["type"] == "/problems/method-not-allowed"


def test_a_stream_is_sent_piece_by_piece_and_closed_when_the_client_goes_away(app):
    produced, closed = threading.Event(), threading.Event()

    def streaming(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def pieces():
            try:
                for n in range(1000):
                    produced.set()
                    yield f"data: {n}\n\n".encode()
                    threading.Event().wait(0.01)
            finally:
                closed.set()

        return pieces()

    front = ThreadedWSGI(streaming, threads=1, body_timeout=1, max_body=10)
    exchange = Exchange([b""], disconnect_after=0.2)
    asyncio.run(front(scope("GET", "/", {}), exchange.receive, exchange.send))
    front._pool.shutdown()
    assert closed.is_set()  # the app's iterator was closed, not run to its end
    pieces = [message["body"] for message in exchange.sent[1:]]
    assert 2 < len(pieces) < 100
    assert pieces[0] == b"data: 0\n\n"
    assert all(message.get("more_body") for message in exchange.sent[1:])


def test_lifespan_is_acknowledged(app):
    front = ThreadedWSGI(app, threads=1, body_timeout=1, max_body=10)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(front({"type": "lifespan"}, receive, send))
    front._pool.shutdown()
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
