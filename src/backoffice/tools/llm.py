"""The chat gateway's HTTP client: an OpenAI-compatible `/v1/chat/completions`, over one
pooled httpx client per process.

Whatever goes wrong upstream leaves this module as one of our problems, in our words:
not configured (503), no answer in time (504), or an error status, garbage, the wrong
shape or no connection at all (502). The model server's own error text and our API key
never leave it, neither in a problem nor in a log line. Every call writes one `llm_call`
log line with the upstream status, the latency, the attempts and the outcome.

Bounds: `LLM_TIMEOUT` for each wait on the model server (the answer, a stream's next
bytes), and `LLM_DEADLINE` for the whole call, checked as each piece arrives: a call ends
at the latest `LLM_DEADLINE + LLM_TIMEOUT` after it began, however the server dribbles.
An answer is at most `MAX_ANSWER_BYTES`, streamed or not, counted as it arrives (a stream
is split into lines here, so a 20 MB line is refused at 4 MiB, not held whole first).

Retries: one, and only when the connection could not be made (`httpx.ConnectError`: the
request was never sent). A timeout or a failure after the request went out is not
retried: the model server may be working on it, and the tokens are spent either way.

Not the `openai` SDK or httpx-sse: neither caps a streamed answer's size or line length as it
arrives nor gives a whole-call deadline (docs/architecture/libraries.md).
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, cast

import httpx
import orjson
import structlog
from flask import Flask, current_app
from pydantic import BaseModel, Field, StrictInt, StrictStr, ValidationError

from backoffice import metrics
from backoffice.errors import APIError, ServiceUnavailable

log = structlog.get_logger(__name__)

COMPLETIONS_PATH = "/v1/chat/completions"
#: An answer larger than this is refused (502; a stream ends with an `error` event) rather
#: than held in memory or relayed.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: Per process. A Granian worker serves 4 requests at a time, so this is never the limit;
#: it only bounds what a runaway could open.
POOL_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=8, keepalive_expiry=30)
#: One retry, when no connection could be made.
CONNECT_ATTEMPTS = 2

#: `{"role": "system" | "user", "content": "..."}`
Message = Mapping[str, str]


# --- the problems -------------------------------------------------------------------


class ChatNotConfigured(ServiceUnavailable):
    slug = "chat-not-configured"

    def __init__(self) -> None:
        super().__init__("The chat gateway is not configured on this server (LLM_BASE_URL).")


class ModelServerBusy(ServiceUnavailable):
    """Every pooled connection is in use: nothing was sent."""

    slug = "model-server-busy"
    retry_after = 1

    def __init__(self) -> None:
        super().__init__("Too many chat calls are in flight on this server; retry shortly.")


class ModelServerError(APIError):
    status, slug = 502, "model-server-error"


class ModelServerTimeout(APIError):
    status, slug = 504, "model-server-timeout"


class CallDeadlinePassed(ModelServerTimeout):
    def __init__(self, deadline: float) -> None:
        super().__init__(
            f"The model server did not finish the answer within {deadline:g} seconds "
            "(LLM_DEADLINE)."
        )


# --- what the model server answers ----------------------------------------------------

#: PostgreSQL's INTEGER, where usage is stored: a larger count is a wrong answer.
Tokens = Annotated[StrictInt, Field(ge=0, le=2_147_483_647)]


class _Usage(BaseModel):
    prompt_tokens: Tokens | None = None
    completion_tokens: Tokens | None = None
    total_tokens: Tokens | None = None


class _Message(BaseModel):
    content: StrictStr


class _Choice(BaseModel):
    message: _Message


class _Completion(BaseModel):
    choices: Annotated[list[_Choice], Field(min_length=1)]
    usage: _Usage | None = None


class _Delta(BaseModel):
    content: StrictStr | None = None


class _StreamChoice(BaseModel):
    delta: _Delta = _Delta()


class _Chunk(BaseModel):
    """One streamed event. `choices` is required (an in-stream error object has none);
    the last chunk before `[DONE]` carries `usage` and no choices."""

    choices: list[_StreamChoice]
    usage: _Usage | None = None


@dataclass(frozen=True)
class TokenUsage:
    """What a call spent, as the model server counted it (None: not reported)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @classmethod
    def of(cls, usage: _Usage | None) -> TokenUsage:
        if usage is None:
            return cls()
        total = usage.total_tokens
        if total is None and None not in (usage.prompt_tokens, usage.completion_tokens):
            total = (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
        return cls(usage.prompt_tokens, usage.completion_tokens, total)


@dataclass(frozen=True)
class Completion:
    content: str
    usage: TokenUsage


#: What a stream yields: each delta of the answer's text, then one `TokenUsage`, last.
StreamPart = str | TokenUsage

M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: str | bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        # Not JSON, or not the shape: either way the server is not speaking the protocol.
        raise ModelServerError(
            "The model server's answer was not a chat completion this gateway understands."
        ) from None


def _event_data(lines: Iterator[str]) -> Iterator[str]:
    """The `data` of each server-sent event (data lines joined by newlines); comments and
    other fields are skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


# --- the client -------------------------------------------------------------------------


@dataclass
class _CallLog:
    """What the `llm_call` log line says about one call."""

    stream: bool
    started: float = field(default_factory=time.perf_counter)
    attempts: int = 0
    upstream_status: int | None = None
    outcome: str = "completed"
    reason: str | None = None
    usage: TokenUsage | None = None


class ChatGateway:
    """The model server as this process sees it: its settings and one pooled client."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        timeout: float,
        connect_timeout: float,
        deadline: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        #: Seconds a whole call may take (LLM_DEADLINE).
        self.deadline = deadline
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout)
        #: For tests that need a connection to fail: a transport wrapping the real one.
        self._transport = transport
        self._client: httpx.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ChatGateway:
        return cls(
            config["LLM_BASE_URL"],
            config["LLM_API_KEY"],
            config["LLM_MODEL"],
            config["LLM_TIMEOUT"],
            config["LLM_CONNECT_TIMEOUT"],
            config["LLM_DEADLINE"],
        )

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)

    def require_configured(self) -> None:
        if not self.configured:
            raise ChatNotConfigured

    def http_client(self) -> httpx.Client:
        """This process's client, made on first use: a server that forks its workers after
        loading the app gives each worker its own pool, never a copy of the parent's."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                self._client = httpx.Client(
                    base_url=self.base_url,
                    headers=headers,
                    timeout=self._timeout,
                    limits=POOL_LIMITS,
                    transport=self._transport,
                )
                self._pid = os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None

    # --- calls --------------------------------------------------------------------

    def complete(self, messages: list[Message]) -> Completion:
        """One whole answer."""
        with self._call(stream=False) as call:
            response = self._send(messages, call, stream=False)
            try:
                body = b"".join(self._bounded(response, call))
            finally:
                response.close()
            completion = _parse(_Completion, body)
            call.usage = TokenUsage.of(completion.usage)
            return Completion(completion.choices[0].message.content, call.usage)

    def open_stream(self, messages: list[Message]) -> Generator[StreamPart, None, None]:
        """Send a streamed request and wait for the status line; then read the deltas as
        they arrive. Problems before the first delta are raised here (so the client gets a
        real 502/504); later ones are raised while iterating. Closing the generator closes
        the upstream request."""
        parts = self._stream(messages)
        next(parts)  # runs up to the checked status line (yielding None), or raises
        return cast(Generator[StreamPart, None, None], parts)

    def _stream(self, messages: list[Message]) -> Generator[StreamPart | None, None, None]:
        with self._call(stream=True) as call:
            response = self._send(messages, call, stream=True)
            try:
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raise ModelServerError("The model server did not answer with a stream.")
                yield None
                usage: _Usage | None = None
                for data in _event_data(_lines(self._bounded(response, call))):
                    if data == "[DONE]":
                        break
                    chunk = _parse(_Chunk, data)
                    usage = chunk.usage or usage
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
                else:
                    raise ModelServerError(
                        "The model server ended the stream before the answer was complete."
                    )
            finally:
                response.close()
            call.usage = TokenUsage.of(usage)
            yield call.usage

    def _send(self, messages: list[Message], call: _CallLog, *, stream: bool) -> httpx.Response:
        self.require_configured()
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        client = self.http_client()
        request = client.build_request(
            "POST",
            COMPLETIONS_PATH,
            content=orjson.dumps(body),
            headers={
                "Content-Type": "application/json",
                "Accept": "text/event-stream" if stream else "application/json",
            },
        )
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            call.attempts = attempt
            try:
                response = client.send(request, stream=True)
                break
            except httpx.ConnectError:
                if attempt == CONNECT_ATTEMPTS:
                    raise
        call.upstream_status = response.status_code
        if response.status_code != 200:
            response.close()
            raise ModelServerError("The model server answered with an error.")
        return response

    def _bounded(self, response: httpx.Response, call: _CallLog) -> Iterator[bytes]:
        """The answer's bytes as they arrive, ended with our problem once there are more
        than `MAX_ANSWER_BYTES` of them or the call's deadline has passed."""
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise ModelServerError("The model server's answer was too large.")
            if time.perf_counter() - call.started > self.deadline:
                raise CallDeadlinePassed(self.deadline)
            yield chunk

    @contextmanager
    def _call(self, *, stream: bool) -> Iterator[_CallLog]:
        """Turn what httpx raises into our problems, and log the call once it is over."""
        call = _CallLog(stream=stream)
        try:
            yield call
        except ChatNotConfigured:
            raise  # nothing was sent: nothing to log
        except httpx.PoolTimeout:
            call.outcome, call.reason = "busy", "pool_timeout"
            raise ModelServerBusy from None
        except httpx.TimeoutException as error:
            call.outcome, call.reason = "timed_out", type(error).__name__
            raise ModelServerTimeout(
                "The model server did not answer in time."
                if call.upstream_status is None
                else "The model server stopped sending the answer."
            ) from None
        except httpx.ConnectError:
            call.outcome, call.reason = "failed", "ConnectError"
            raise ModelServerError("The model server could not be reached.") from None
        except httpx.HTTPError as error:
            call.outcome, call.reason = "failed", type(error).__name__
            raise ModelServerError(
                "The connection to the model server failed."
                if call.upstream_status is None
                else "The model server broke off the answer."
            ) from None
        except ModelServerError as error:
            call.outcome, call.reason = "failed", error.detail
            raise
        except CallDeadlinePassed:
            call.outcome, call.reason = "timed_out", "deadline"
            raise
        except GeneratorExit:
            call.outcome = "cancelled"  # the client went away mid-stream
            raise
        finally:
            if call.attempts:
                self._log(call)

    def _log(self, call: _CallLog) -> None:
        seconds = time.perf_counter() - call.started
        usage = call.usage or TokenUsage()
        metrics.observe_llm_call(
            call.outcome, call.stream, seconds, usage.prompt_tokens, usage.completion_tokens
        )
        level = log.info if call.outcome in {"completed", "cancelled"} else log.warning
        level(
            "llm_call",
            model=self.model,
            stream=call.stream,
            upstream_status=call.upstream_status,
            latency_ms=round(seconds * 1000, 2),
            attempts=call.attempts,
            outcome=call.outcome,
            reason=call.reason,
        )


#: Where a line of an event stream ends (CRLF, LF or CR: the server-sent events rule).
_LINE_END = re.compile(r"\r\n|\r|\n")


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a UTF-8 event stream, as its bytes arrive."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending: list[str] = []
    for chunk in chunks:
        text = decoder.decode(chunk)
        if "\n" not in text and "\r" not in text:
            pending.append(text)
            continue
        text = "".join((*pending, text))
        # A CR at the very end may be the first half of a CRLF: keep it for what follows.
        cut = len(text) - 1 if text.endswith("\r") else len(text)
        *complete, rest = _LINE_END.split(text[:cut])
        yield from complete
        pending = [rest + text[cut:]]
    rest = "".join(pending) + decoder.decode(b"", final=True)
    if rest:
        yield from _LINE_END.split(rest.removesuffix("\r"))


def init_chat_gateway(app: Flask) -> None:
    """One gateway per app; its HTTP client is made in each process on first use."""
    app.extensions["chat_gateway"] = ChatGateway.from_config(app.config)
    # httpx logs every request at INFO as plain text: keep the JSON log lines clean.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def chat_gateway() -> ChatGateway:
    gateway: ChatGateway = current_app.extensions["chat_gateway"]
    return gateway
