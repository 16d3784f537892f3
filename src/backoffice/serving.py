"""The production server's front: the WSGI app served from Granian's event loop (its RSGI
interface, Granian's own), so that no slow client can hold one of the app's threads.

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
- unless its path is one of a lane's (`Lane`; which paths, the app decides:
  `backoffice.lanes`): then it runs on that lane's threads, which take no more of the
  process's time than their share, and a flood of such requests waits behind itself.
  Past the lane's queue, the app refuses it at once (503) on the shared threads.

An answer with a Content-Length is collected in the thread and handed over in one piece;
one without (a stream) is sent piece by piece as the app yields it, the thread waiting
for each piece to be taken by the server (so a slow reader slows the producer, never
fills memory), and the iteration is closed as soon as the client goes away.

RSGI rather than ASGI: the same design through ASGI's message dicts cost a quarter of an
item read's throughput; through RSGI and a plain queue to the threads, it is within a few
percent of Granian's WSGI interface (docs/benchmarks.md, Server choice).
"""

from __future__ import annotations

import asyncio
import io
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]
T = TypeVar("T")

#: Where the front tells the app that a request's body did not arrive whole in time: the
#: seconds it waited (the app answers 408, `conventions.refuse_incomplete_body`).
BODY_TIMED_OUT = "backoffice.body_timed_out"
#: Where the front names a header whose value it could not read as text (not visible
#: ASCII; Granian drops such values): the app answers 400 rather than act without it.
UNREADABLE_HEADER = "backoffice.unreadable_header"
#: Where the front tells the app that a request's lane had no room left (`Lane.queue`
#: waiting already): the lane's name. The app answers 503 at once, on the shared threads.
LANE_FULL = "backoffice.lane_full"

#: What every request's environ starts from.
_BASE_ENVIRON: dict[str, Any] = {
    "SCRIPT_NAME": "",
    "wsgi.version": (1, 0),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
}


class Scope(Protocol):
    """What Granian tells of a request (RSGI's HTTP scope)."""

    proto: str
    http_version: str
    server: str
    client: str
    scheme: str
    method: str
    path: str
    query_string: str
    headers: Any


class ClientGone(Exception):
    """The client went away while a streamed answer was being sent."""


@dataclass(frozen=True)
class Lane:
    """Requests whose path starts with one of `prefixes` run on `threads` threads of their
    own, not on the shared ones: a flood of them waits behind itself, never in front of
    everyone else. At most `queue` of them wait for the lane's threads in a process; the
    next one is handed to the app on the shared threads marked `LANE_FULL`, to be refused
    at once.

    A lane's thread also takes no more of the process's time than any one thread's share
    (`ThreadedWSGI`): its own threads alone would not stop a flood that never waits on
    anything from holding the interpreter lock most of the time, while the shared threads
    wait on the database and then for the lock."""

    name: str
    prefixes: tuple[str, ...]
    threads: int
    queue: int


class AppThreads:
    """The threads that run the app, fed through a plain queue (an executor's futures
    cost more than the handing over itself). Started in the process that uses them: a
    server that forks after importing the app gets them in each worker.

    With `rest`, a thread sleeps after each job `rest` times the CPU time the job took,
    without the interpreter lock: busy without a break, it takes at most 1 / (1 + rest) of
    the process's time, however much work is queued for it."""

    def __init__(self, size: int, name: str = "app", rest: float = 0.0) -> None:
        self.size = size
        self.name = name
        self.rest = rest
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._pid: int | None = None
        self._lock = threading.Lock()

    def run(self, loop: asyncio.AbstractEventLoop, work: Callable[[], T]) -> asyncio.Future[T]:
        """`work()` on one of the threads; its result (or exception) in the future."""
        if self._pid != os.getpid():
            self._start()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = work()
            except BaseException as error:  # handed to the awaiting request, as raised
                loop.call_soon_threadsafe(_fail, future, error)
            else:
                loop.call_soon_threadsafe(_resolve, future, result)

        self._jobs.put(job)
        return future

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            for number in range(self.size):
                name = f"{self.name}-{number}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            self._pid = os.getpid()

    def waiting(self) -> int:
        """Jobs handed over that no thread has taken yet."""
        return self._jobs.qsize()

    def _work(self) -> None:
        # No job is kept once it has run: one may hold a streamed answer's transport, and
        # Granian ends the answer only when that is let go.
        while True:
            if not self.rest:
                self._jobs.get()()
                continue
            job = self._jobs.get()
            started = time.thread_time()
            job()  # its answer is handed over before the rest: only the next job waits
            del job
            time.sleep((time.thread_time() - started) * self.rest)


def _resolve(future: asyncio.Future[T], result: T) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(error)


class ThreadedWSGI:
    """An RSGI app that runs `wsgi_app` on `threads` threads, each request's body read
    whole first, within `body_timeout` seconds and `max_body` bytes; the requests of each
    of `lanes` on that lane's threads."""

    def __init__(
        self,
        wsgi_app: WSGIApp,
        *,
        threads: int,
        body_timeout: float,
        max_body: int,
        lanes: Sequence[Lane] = (),
    ) -> None:
        self.wsgi_app = wsgi_app
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.threads = AppThreads(threads)
        # Every thread's fair share: a lane's thread rests (all threads - 1) times as long
        # as it worked (1 lane thread beside 4 shared ones: at most a fifth of the time).
        rest = threads + sum(lane.threads for lane in lanes) - 1
        self.lanes = [(lane, AppThreads(lane.threads, lane.name, rest)) for lane in lanes]

    def _threads_for(self, environ: dict[str, Any]) -> AppThreads:
        """The lane's threads when the path is one of a lane's, and it has room; else the
        shared ones."""
        path = environ["PATH_INFO"]
        for lane, threads in self.lanes:
            if path.startswith(lane.prefixes):
                if threads.waiting() < lane.queue:
                    return threads
                environ[LANE_FULL] = lane.name
                break
        return self.threads

    async def __rsgi__(self, scope: Scope, protocol: Any) -> None:
        if scope.proto != "http":
            return  # websockets are not served (and off in deploy/granian.env)
        environ = _environ(scope)
        body = b""
        if "CONTENT_LENGTH" in environ or "HTTP_TRANSFER_ENCODING" in environ:
            body = await self._read_body(environ, protocol)
        environ["wsgi.input"] = io.BytesIO(body)
        loop = asyncio.get_running_loop()
        threads = self._threads_for(environ)
        status, headers, content = await threads.run(loop, lambda: _run(self.wsgi_app, environ))
        if isinstance(content, bytes):
            protocol.response_bytes(status, headers, content)
        else:
            stream = protocol.response_stream(status, headers)
            await self._stream(stream, content, protocol, loop, threads)

    async def _read_body(self, environ: dict[str, Any], protocol: Any) -> bytes:
        """The whole body, or as much as tells the app to refuse it: none when it did not
        arrive within the deadline (408) or is announced too long (413), the first
        `max_body` bytes and a bit when it turns out too long (413)."""
        announced = environ.get("CONTENT_LENGTH")
        if "HTTP_TRANSFER_ENCODING" in environ:
            announced = None  # chunked: the length announced beside it means nothing (RFC 9112)
        elif announced is not None and announced.isdigit() and int(announced) > self.max_body:
            return b""
        try:
            async with asyncio.timeout(self.body_timeout):
                if announced is not None:  # as long as announced: Granian holds it to that
                    body: bytes = await protocol()
                    return body
                chunks = await self._read_chunked(protocol)
        except TimeoutError:
            environ[BODY_TIMED_OUT] = self.body_timeout
            return b""
        # Chunked, it arrived whole: the app sees a body of known length (a longer one than
        # it takes, it refuses with 413).
        body = b"".join(chunks)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return body

    async def _read_chunked(self, protocol: Any) -> list[bytes]:
        """A body of unannounced length, read up to just past `max_body`."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in protocol:
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body:
                break
        return chunks

    async def _stream(
        self,
        transport: Any,
        content: Iterator[bytes],
        protocol: Any,
        loop: asyncio.AbstractEventLoop,
        threads: AppThreads,
    ) -> None:
        """Send what `content` yields as the app's thread produces it (one of `threads`);
        stop it when the client goes away."""
        gone = threading.Event()

        async def watch() -> None:
            await protocol.client_disconnect()
            gone.set()

        async def send(chunk: bytes) -> None:
            await transport.send_bytes(chunk)

        def pump() -> None:
            try:
                for chunk in content:
                    if gone.is_set():
                        raise ClientGone
                    if chunk:
                        asyncio.run_coroutine_threadsafe(send(chunk), loop).result()
            except ClientGone:
                pass
            finally:
                _close(content)

        watcher = asyncio.ensure_future(watch())
        try:
            await threads.run(loop, pump)
        finally:
            watcher.cancel()


def _run(app: WSGIApp, environ: dict[str, Any]) -> tuple[int, Headers, bytes | Iterator[bytes]]:
    """Call the app in this thread: its status, headers, and either its whole body (it has
    a Content-Length) or the iterator of a stream, still to be consumed."""
    started: list[Any] = []

    def start_response(status: str, headers: Headers, exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return _no_write

    result = app(environ, start_response)
    iterator = iter(result)
    if not started:  # the app yields before it starts the response (allowed by PEP 3333)
        first = next(iterator, b"")
        iterator = _chain(first, iterator)
    status, headers = started
    code = int(status[:3])
    if any(name.lower() == "content-length" for name, _ in headers):
        try:
            body = b"".join(iterator)
        finally:
            _close(result)
        return code, headers, body
    return code, headers, _Closing(iterator, result)


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the app must return its body, not write() it")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


class _Closing(Iterator[bytes]):
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


def _address(address: str) -> tuple[str, str]:
    """`host:port` (an IPv6 host in brackets) as WSGI's host and port."""
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), port


def _environ(scope: Scope) -> dict[str, Any]:
    """The WSGI environ of a request (PEP 3333: strings are latin-1 "bytes as text")."""
    server_host, server_port = _address(scope.server)
    client_host, client_port = _address(scope.client)
    environ = dict(_BASE_ENVIRON)
    environ.update(
        REQUEST_METHOD=scope.method,
        PATH_INFO=scope.path.encode().decode("latin-1"),
        QUERY_STRING=scope.query_string,
        SERVER_NAME=server_host,
        SERVER_PORT=server_port,
        SERVER_PROTOCOL=f"HTTP/{scope.http_version}",
        REMOTE_ADDR=client_host,
        REMOTE_PORT=client_port,
    )
    environ["wsgi.url_scheme"] = scope.scheme
    headers = scope.headers
    seen: set[str] = set()
    for name, value in headers.items():
        seen.add(name)
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value
            continue
        key = f"HTTP_{key}"
        if key in environ:  # a repeated header: one value, as RFC 9110 joins them
            value = f"{environ[key]}{'; ' if key == 'HTTP_COOKIE' else ','}{value}"
        environ[key] = value
    if len(seen) < len(headers):  # Granian leaves out a value that is not visible ASCII
        environ[UNREADABLE_HEADER] = next(name for name in headers if name not in seen)
    return environ
