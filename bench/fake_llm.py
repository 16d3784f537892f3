"""A fake OpenAI-compatible model server, for trying the chat gateway by hand and for its tests.

    uv run python -m bench.fake_llm [--port 8001] [--mode echo] [--delay 0.05]

`POST /v1/chat/completions` answers "You said: <the last user message>", whole or streamed
word by word as server-sent events (with the usage chunk `stream_options.include_usage`
asks for, then `data: [DONE]`). Token counts are words: the prompt's, and the answer's.

What it does instead, by `--mode` (or `server.mode`, which a test may change at any time):

- `echo`: answer (the default);
- `slow`: answer only once `server.resume` is set (the caller's timeout fires first);
- `error`: 500 with an error body of its own (which must never reach our clients);
- `garbage`: 200 with a body that is not JSON, or a stream of events that are not;
- `wrong_shape`: 200 with JSON that is no chat completion (a stream: JSON, not events);
- `cut`: stream half the answer, then drop the connection;
- `truncated`: stream half the answer, then end the response cleanly without `[DONE]`;
- `huge`: answer 20 MB of text (a stream: as one delta);
- `dribble`: send a whole answer a few bytes at a time, `delay` seconds apart.

With `server.pause_after = n`, a stream stops after n deltas until `server.resume` is set.
Every request is recorded (`server.received`: path, Authorization header, JSON body,
client port), and so is every client that went away in the middle of a stream
(`server.disconnects`).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("echo", "slow", "error", "garbage", "wrong_shape", "cut", "truncated", "huge", "dribble")
#: How long `huge` mode's answer is.
HUGE_ANSWER = 20 * 1024 * 1024
#: What `error` mode answers: a test asserts it never reaches a client or a log.
UPSTREAM_ERROR_TEXT = "fake-upstream-internal-detail: quota exceeded for org-12345"
#: The longest a paused or slow answer waits for `resume` (a test sets it much sooner).
MAX_PAUSE = 30.0


@dataclass(frozen=True)
class Received:
    path: str
    authorization: str | None
    body: dict[str, Any]
    client_port: int


class FakeLLM(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], mode: str = "echo", delay: float = 0.0) -> None:
        super().__init__(address, _Handler)
        self._lock = threading.Lock()
        self.resume = threading.Event()
        self.reset(mode, delay)

    def reset(self, mode: str = "echo", delay: float = 0.0) -> None:
        """Back to a fresh server's behaviour and records (any paused answer is let go)."""
        self.resume.set()
        self.mode = mode
        #: Seconds between two streamed deltas.
        self.delay = delay
        self.pause_after: int | None = None
        self.resume = threading.Event()
        with self._lock:
            self.received: list[Received] = []
            self.disconnects = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def disconnected(self) -> None:
        with self._lock:
            self.disconnects += 1


def _words(text: str) -> int:
    return len(text.split())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeLLM

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: the tests and the terminal have their own output

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            self._send(404, b'{"error": {"message": "no such route"}}')
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, b'{"error": {"message": "not JSON"}}')
            return
        self.server.record(
            Received(self.path, self.headers.get("Authorization"), body, self.client_address[1])
        )
        try:
            self._answer(body)
        except (BrokenPipeError, ConnectionResetError):
            self.server.disconnected()
            self.close_connection = True

    def _answer(self, body: dict[str, Any]) -> None:
        mode, stream = self.server.mode, bool(body.get("stream"))
        if mode == "slow":
            self.server.resume.wait(MAX_PAUSE)
        if mode == "error":
            error = {"error": {"message": UPSTREAM_ERROR_TEXT, "type": "server_error"}}
            self._send(500, json.dumps(error).encode())
        elif mode == "garbage" and not stream:
            self._send(200, b"<html>Bad gateway, in HTML</html>")
        elif mode == "wrong_shape":
            self._send(200, json.dumps({"object": "chat.completion", "answer": "hi"}).encode())
        elif stream:
            self._stream(body, mode)
        elif mode == "dribble":
            self._dribble(json.dumps(self._completion(body)).encode())
        else:
            self._send(200, json.dumps(self._completion(body)).encode())

    def _dribble(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        for start in range(0, len(payload), 8):
            self.wfile.write(payload[start : start + 8])
            self.wfile.flush()
            time.sleep(self.server.delay)

    def _reply(self, body: dict[str, Any]) -> str:
        if self.server.mode == "huge":
            return "x" * HUGE_ANSWER
        users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        return f"You said: {users[-1] if users else ''}"

    def _usage(self, body: dict[str, Any], reply: str) -> dict[str, int]:
        prompt = sum(_words(str(m.get("content", ""))) for m in body.get("messages", []))
        completion = _words(reply)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = self._reply(body)
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(body, reply),
        }

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _chunk(self, data: str) -> None:
        """One server-sent event, as one HTTP chunk, flushed."""
        payload = data.encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _event(self, value: dict[str, Any] | str) -> None:
        self._chunk(f"data: {value if isinstance(value, str) else json.dumps(value)}\n\n")

    def _stream(self, body: dict[str, Any], mode: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if mode == "garbage":
            self._chunk("data: {this is not json\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        reply = self._reply(body)
        pieces = [reply] if mode == "huge" else re.findall(r"\S+\s*", reply)
        half = len(pieces) // 2
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": body.get("model"),
        }
        for n, piece in enumerate(pieces):
            if mode in {"cut", "truncated"} and n == half:
                break
            if self.server.pause_after is not None and n == self.server.pause_after:
                self.server.resume.wait(MAX_PAUSE)
            elif n and self.server.delay:
                time.sleep(self.server.delay)
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            self._event({**base, "choices": [delta]})
        else:
            self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if body.get("stream_options", {}).get("include_usage"):
                self._event({**base, "choices": [], "usage": self._usage(body, reply)})
            self._event("[DONE]")
        if mode == "cut":
            self.close_connection = True  # no last chunk: the body is incomplete
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@contextmanager
def serving(mode: str = "echo", delay: float = 0.0, host: str = "127.0.0.1") -> Iterator[FakeLLM]:
    """A fake model server on a free port, in a thread, for the length of the block."""
    server = FakeLLM((host, 0), mode, delay)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.resume.set()  # free every paused answer
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_llm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--mode", choices=MODES, default="echo")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between deltas")
    args = parser.parse_args(argv)
    server = FakeLLM((args.host, args.port), args.mode, args.delay)
    print(f"Fake model server on {server.url} (mode {args.mode}); Ctrl-C stops it", flush=True)
    with suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
