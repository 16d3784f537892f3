"""The production server's front: the WSGI app served from Granian's asyncio event loop
(its ASGI interface), so that no slow client can hold one of the app's threads.

Why not Granian's WSGI interface: it hands a request to a Python thread as soon as the
headers have arrived, and the app then reads the body from that thread, blocking it for
as long as the client takes to send it. Granian bounds the wait for headers, not for a
body: eight clients announcing 1,000 bytes and sending one every 2 s held every thread of
a `deploy/serve`, and every other request waited for them.

Here a request takes a thread only once it is complete:

- its body is read on the event loop, where a waiting request costs a few hundred bytes
  and no thread, within `BODY_READ_TIMEOUT` seconds (the whole body, not between two
  pieces: a client trickling a byte a second gains nothing). Past it the request is
  answered 408 by the app (a problem, like every error), without having waited for a
  thread;
- a body announced larger than MAX_CONTENT_LENGTH is not read at all, and one that turns
  out larger (chunked) stops being read there: the app answers 413 either way;
- then the app runs on one of `SERVER_THREADS` threads, with the body in memory, and its
  answer is sent from the event loop: a client that reads slowly holds no thread either,
  except while a streamed answer (a chat's events) is being produced, which the chat
  gateway bounds on its own (`backoffice.tools.capacity`).

An answer with a Content-Length is collected in the thread and handed over in one piece;
one without (a stream) is sent piece by piece as the app yields it, the thread waiting
for each piece to be taken by the server (so a slow reader slows the producer, never
fills memory), and the iteration is closed as soon as the client goes away.
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Where the front tells the app that a request's body did not arrive whole in time: the
#: seconds it waited (the app answers 408, `conventions.refuse_incomplete_body`).
BODY_TIMED_OUT = "backoffice.body_timed_out"


class ClientGone(Exception):
    """The client went away while a streamed answer was being sent."""


class ThreadedWSGI:
    """An ASGI app that runs `wsgi_app` on a pool of `threads`, each request's body read
    whole first, within `body_timeout` seconds and `max_body` bytes."""

    def __init__(
        self, wsgi_app: WSGIApp, *, threads: int, body_timeout: float, max_body: int
    ) -> None:
        self.wsgi_app = wsgi_app
        self.threads = threads
        self.body_timeout = body_timeout
        self.max_body = max_body
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="app")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        # Websockets: none are served; returning without accepting closes the connection.

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        environ = _environ(scope)
        body, complete = await self._read_body(environ, receive)
        if not complete:
            environ[BODY_TIMED_OUT] = self.body_timeout
        environ["wsgi.input"] = io.BytesIO(body)
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self._pool, _run, self.wsgi_app, environ)
        status, headers, content = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if isinstance(content, bytes):
            await send({"type": "http.response.body", "body": content})
            return
        await self._stream(content, receive, send, loop)

    async def _read_body(self, environ: dict[str, Any], receive: Receive) -> tuple[bytes, bool]:
        """The whole body (False: not within the deadline). A body announced or found
        longer than `max_body` is not read further: the app refuses it (413)."""
        announced = environ.get("CONTENT_LENGTH")
        if announced is not None and announced.isdigit() and int(announced) > self.max_body:
            return b"", True
        chunks: list[bytes] = []
        size = 0

        async def read() -> None:
            nonlocal size
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # http.disconnect: the answer will have nobody to reach
                chunk = message.get("body", b"")
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_body or not message.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(read(), self.body_timeout)
        except TimeoutError:
            return b"", False
        body = b"".join(chunks)
        if announced is None or size > self.max_body:
            # The app sees a body of known length (chunked or not, it arrived whole), or
            # one announced too long, which it refuses (413) without reading it.
            environ["CONTENT_LENGTH"] = str(size)
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return body, True

    async def _stream(
        self,
        content: Iterator[bytes],
        receive: Receive,
        send: Send,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Send what `content` yields as the app's thread produces it; stop it when the
        client goes away."""
        gone = threading.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())

        async def send_piece(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        def pump() -> None:
            try:
                for chunk in content:
                    if gone.is_set():
                        raise ClientGone
                    if chunk:
                        asyncio.run_coroutine_threadsafe(send_piece(chunk), loop).result()
            except ClientGone:
                pass
            finally:
                _close(content)

        try:
            await loop.run_in_executor(self._pool, pump)
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()


def _run(
    app: WSGIApp, environ: dict[str, Any]
) -> tuple[int, list[tuple[bytes, bytes]], bytes | Iterator[bytes]]:
    """Call the app in this thread: its status, headers, and either its whole body (it has
    a Content-Length) or the iterator of a stream, still to be consumed."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return _no_write

    result = app(environ, start_response)
    iterator = iter(result)
    if not started:  # the app yields before it starts the response (allowed by PEP 3333)
        first = next(iterator, b"")
        iterator = _chain(first, iterator)
    status, headers = started
    encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    code = int(status[:3])
    if any(name == b"content-length" for name, _ in encoded):
        try:
            body = b"".join(iterator)
        finally:
            _close(result)
        return code, encoded, body
    return code, encoded, _closing(iterator, result)


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the app must return its body, not write() it")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


class _closing(Iterator[bytes]):  # noqa: N801 (used like a function)
    """`iterator`, whose `close()` closes the app's result (PEP 3333 asks for it)."""

    def __init__(self, iterator: Iterator[bytes], result: Iterable[bytes]) -> None:
        self._iterator = iterator
        self._result = result

    def __next__(self) -> bytes:
        return next(self._iterator)

    def close(self) -> None:
        _close(self._result)


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _environ(scope: Scope) -> dict[str, Any]:
    """The WSGI environ of an ASGI request (PEP 3333: strings are latin-1 "bytes as text")."""
    server_host, server_port = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    root = scope.get("root_path", "")
    path = scope["path"]
    if root and path.startswith(root):
        path = path[len(root) :]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode().decode("latin-1"),
        "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server_host),
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0] if client else "",
        "REMOTE_PORT": str(client[1]) if client else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH":
            environ[name] = value
            continue
        key = f"HTTP_{name}"
        if key in environ:  # a repeated header: one value, as RFC 9110 joins them
            value = f"{environ[key]}{'; ' if key == 'HTTP_COOKIE' else ','}{value}"
        environ[key] = value
    return environ


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the app is built when this module is imported."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
