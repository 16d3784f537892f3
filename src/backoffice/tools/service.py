"""Tools: text processing, division, and chat through the gateway, each call's usage
recorded for the user who made it."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, cast

import structlog
from flask import Flask, current_app
from sqlalchemy import Row, Table, insert, select
from sqlalchemy.exc import SQLAlchemyError

from backoffice import transactions
from backoffice.errors import ValidationFailed
from backoffice.extensions import db
from backoffice.ownership import Viewer
from backoffice.pagination import Page, paginate
from backoffice.tools.capacity import Place, take_place
from backoffice.tools.llm import (
    Message,
    ModelServerError,
    ModelServerTimeout,
    StreamPart,
    TokenUsage,
    chat_gateway,
)
from backoffice.tools.models import ChatOutcome, ChatUsage

log = structlog.get_logger(__name__)

CHAT_USAGE: Table = cast(Table, ChatUsage.__table__)
USAGE_COLUMNS = select(*CHAT_USAGE.columns)


# --- text and numbers -------------------------------------------------------------


def process_text(text: str) -> dict[str, Any]:
    """The text upper-cased, its length in characters and its number of words."""
    return {"processed": text.upper(), "length": len(text), "words": len(text.split())}


def divide(a: float, b: float) -> float:
    """`a / b`, if it is a finite double."""
    if b == 0:
        raise ValidationFailed(
            "Division by zero is undefined: b must not be 0.",
            errors=[{"field": "b", "message": "must not be zero"}],
        )
    quotient = a / b
    if not math.isfinite(quotient):
        raise ValidationFailed(
            "The quotient is too large to represent as a double (beyond ±1.8e308)."
        )
    return quotient


# --- chat -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatReply:
    user_message: str
    assistant_message: str
    tokens_used: int | None


def _messages(message: str, system: str | None) -> list[Message]:
    prompt = [{"role": "system", "content": system}] if system else []
    return [*prompt, {"role": "user", "content": message}]


def _outcome(error: ModelServerError | ModelServerTimeout) -> ChatOutcome:
    return ChatOutcome.TIMED_OUT if isinstance(error, ModelServerTimeout) else ChatOutcome.FAILED


def chat(user_id: uuid.UUID, message: str, system: str | None = None) -> ChatReply:
    """Ask the model and wait for the whole answer, in one of the places calls may hold
    (`tools.capacity`)."""
    gateway = chat_gateway()
    gateway.require_configured()
    place = take_place(user_id)
    started = time.perf_counter()
    try:
        completion = gateway.complete(_messages(message, system))
    except (ModelServerError, ModelServerTimeout) as error:
        record_usage(user_id, gateway.model, False, _outcome(error), TokenUsage(), started)
        raise
    finally:
        place.release()
    record_usage(user_id, gateway.model, False, ChatOutcome.COMPLETED, completion.usage, started)
    return ChatReply(message, completion.content, completion.usage.total_tokens)


class ChatStream:
    """An answer arriving in parts: each delta of text, then one `TokenUsage`.

    Iterating raises `ModelServerError` or `ModelServerTimeout` when the model server
    fails part-way. `close()` ends the upstream request however far it got (the client went
    away); the call's usage is recorded and its place given back exactly once, in an app
    context of its own, so it does not matter who calls `close()` or when.
    """

    def __init__(
        self,
        app: Flask,
        parts: Generator[StreamPart, None, None],
        place: Place,
        user_id: uuid.UUID,
        model: str,
        started: float,
    ) -> None:
        self._app = app
        self._parts = parts
        self._place = place
        self._user_id = user_id
        self._model = model
        self._started = started
        self._usage = TokenUsage()
        self._ended = False

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> StreamPart:
        try:
            part = next(self._parts)
        except StopIteration:
            self._end(ChatOutcome.COMPLETED)
            raise
        except ModelServerTimeout:
            self._end(ChatOutcome.TIMED_OUT)
            raise
        except Exception:  # the model server's failure (ModelServerError), or a bug
            self._end(ChatOutcome.FAILED)
            raise
        if isinstance(part, TokenUsage):
            self._usage = part
        return part

    def close(self) -> None:
        self._parts.close()
        self._end(ChatOutcome.CANCELLED)

    def _end(self, outcome: ChatOutcome) -> None:
        if self._ended:
            return
        self._ended = True
        with self._app.app_context():
            try:
                record_usage(self._user_id, self._model, True, outcome, self._usage, self._started)
            finally:
                self._place.release()


def chat_stream(user_id: uuid.UUID, message: str, system: str | None = None) -> ChatStream:
    """Ask the model for a streamed answer. Problems before the first delta (not
    configured, unreachable, an error status, a timeout) are raised here."""
    gateway = chat_gateway()
    gateway.require_configured()
    place = take_place(user_id)
    started = time.perf_counter()
    try:
        parts = gateway.open_stream(_messages(message, system))
    except (ModelServerError, ModelServerTimeout) as error:
        place.release()
        record_usage(user_id, gateway.model, True, _outcome(error), TokenUsage(), started)
        raise
    except BaseException:
        place.release()
        raise
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return ChatStream(app, parts, place, user_id, gateway.model, started)


# --- usage ------------------------------------------------------------------------


def record_usage(
    user_id: uuid.UUID,
    model: str,
    streamed: bool,
    outcome: ChatOutcome,
    usage: TokenUsage,
    started: float,
) -> None:
    """One row per call that reached for the model server.

    The answer has been (or is being) given: if the database cannot take the row, the
    numbers go to the log (level error) for the operator instead of failing the call.
    """
    values = {
        "user_id": user_id,
        "model": model,
        "streamed": streamed,
        "outcome": outcome.value,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "latency_ms": round((time.perf_counter() - started) * 1000),
    }
    try:
        db.session.execute(insert(CHAT_USAGE).values(**values))
        transactions.commit()
    except SQLAlchemyError as error:
        db.session.rollback()
        log.error("chat_usage_not_recorded", error=type(error).__name__, **values)


def list_usage(
    viewer: Viewer, limit: int, cursor: str | None, user_id: uuid.UUID | None = None
) -> Page[Row[Any]]:
    """Chat calls, newest first: the viewer's own, or everyone's for an admin."""
    query = USAGE_COLUMNS
    if not viewer.is_admin:
        query = query.where(CHAT_USAGE.c.user_id == viewer.user_id)
    if user_id is not None:
        query = query.where(CHAT_USAGE.c.user_id == user_id)
    return paginate("chat-usage", query, ChatUsage.id, limit, cursor)
