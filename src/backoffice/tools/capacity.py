"""How many chat calls may wait on the model server at once.

A chat call holds one of the app's threads for as long as the model server takes: a
streamed answer, for minutes. Unbounded, eight streams from one member held every
thread of a two-process server, and another user's item read waited 28 s. Two bounds
keep the rest of the API, and the other members' chats, answering:

- **per process**, `CHAT_CALLS_PER_PROCESS` places, fewer than the process's
  `SERVER_THREADS` (checked at start-up): the other threads are never all waiting on a
  model, so any other request finds one. A call that finds no place is not queued: 503
  `model-server-busy` with `Retry-After`, at once.
- **per user**, `CHAT_CALLS_PER_USER` places across every process and replica (rows of
  `chat_calls`, whose primary key hands a place to one caller only): past it, 429
  `too-many-chat-calls` with `Retry-After`, so one member cannot hold every place.

Every call ends within `LLM_DEADLINE` (+ one `LLM_TIMEOUT` for the read in progress; see
`tools.llm`), so places always come back. A place is also taken back from a call that
outlived that bound without giving it back (a process that died, a stream its server
never closed): its expiry.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Table, delete

from backoffice.database import autocommit, upsert_insert, utcnow
from backoffice.errors import TooManyRequests
from backoffice.extensions import db
from backoffice.tools.llm import ModelServerBusy
from backoffice.tools.models import ChatCall

CHAT_CALLS: Table = ChatCall.__table__  # type: ignore[assignment]
#: Added to a call's longest life before its place counts as abandoned.
ABANDONED_AFTER = timedelta(seconds=30)
#: What a caller past their own bound is told to wait: their other call may end any time.
USER_RETRY_AFTER = 5


class TooManyChatCalls(TooManyRequests):
    slug = "too-many-chat-calls"
    retry_after = USER_RETRY_AFTER

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You have {limit} chat call{'s' if limit != 1 else ''} in flight already "
            "(CHAT_CALLS_PER_USER); retry when one has ended."
        )


class ProcessPlaces:
    """This process's places: taken without waiting, each given back once, and taken back
    from a holder that kept it past `lifetime` seconds."""

    def __init__(self, size: int, lifetime: float) -> None:
        self.size = size
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._held: dict[int, float] = {}
        self._next = 0

    def take(self) -> int:
        now = time.monotonic()
        with self._lock:
            for token, expiry in list(self._held.items()):
                if expiry < now:
                    del self._held[token]
            if len(self._held) >= self.size:
                raise ModelServerBusy
            self._next += 1
            self._held[self._next] = now + self._lifetime
            return self._next

    def give_back(self, token: int) -> None:
        with self._lock:
            self._held.pop(token, None)

    @property
    def in_use(self) -> int:
        with self._lock:
            return len(self._held)


@dataclass
class Place:
    """The places one call holds; `release()` gives both back (once)."""

    process: ProcessPlaces
    token: int
    user_id: uuid.UUID
    slot: int
    holder: uuid.UUID
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.process.give_back(self.token)
        _give_back_user_place(self.user_id, self.slot, self.holder)


def take_place(user_id: uuid.UUID) -> Place:
    """A place for one call of `user_id`: in this process first (no I/O), then among the
    user's. Raises `ModelServerBusy` (503) or `TooManyChatCalls` (429)."""
    process: ProcessPlaces = current_app.extensions["chat_places"]
    token = process.take()
    try:
        slot, holder = _take_user_place(user_id)
    except BaseException:
        process.give_back(token)
        raise
    return Place(process, token, user_id, slot, holder)


def _take_user_place(user_id: uuid.UUID) -> tuple[int, uuid.UUID]:
    limit: int = current_app.config["CHAT_CALLS_PER_USER"]
    now = utcnow()
    holder = uuid.uuid4()
    expires_at = now + timedelta(seconds=call_lifetime(current_app.config)) + ABANDONED_AFTER
    engine = autocommit(db.engine)
    with engine.connect() as connection:
        connection.execute(
            delete(CHAT_CALLS).where(CHAT_CALLS.c.user_id == user_id, CHAT_CALLS.c.expires_at < now)
        )
        # RETURNING says whether the row went in (psycopg's rowcount is -1 here).
        insert = (
            upsert_insert(engine.dialect.name, CHAT_CALLS)
            .on_conflict_do_nothing()
            .returning(CHAT_CALLS.c.slot)
        )
        for slot in range(limit):
            values = {"user_id": user_id, "slot": slot, "holder": holder, "expires_at": expires_at}
            if connection.execute(insert, values).first() is not None:
                return slot, holder
    raise TooManyChatCalls(limit)


def _give_back_user_place(user_id: uuid.UUID, slot: int, holder: uuid.UUID) -> None:
    with autocommit(db.engine).connect() as connection:
        connection.execute(
            delete(CHAT_CALLS).where(
                CHAT_CALLS.c.user_id == user_id,
                CHAT_CALLS.c.slot == slot,
                CHAT_CALLS.c.holder == holder,
            )
        )


def call_lifetime(config: Any) -> float:
    """The longest a chat call can last: its deadline, plus the read in progress then."""
    return float(config["LLM_DEADLINE"]) + float(config["LLM_TIMEOUT"])


def init_chat_places(app: Flask) -> None:
    """This process's places (a forked worker starts with a copy holding none)."""
    lifetime = call_lifetime(app.config) + ABANDONED_AFTER.total_seconds()
    app.extensions["chat_places"] = ProcessPlaces(app.config["CHAT_CALLS_PER_PROCESS"], lifetime)
