"""How many chat calls may be in flight, and for how long (`tools.capacity`, `tools.llm`).

Per process: `CHAT_CALLS_PER_PROCESS` places, then 503 `model-server-busy` at once. Per
user, across processes: `CHAT_CALLS_PER_USER`, then 429 `too-many-chat-calls`. Every call
ends within `LLM_DEADLINE`, and an answer, streamed or not, is at most `MAX_ANSWER_BYTES`.
Streamed and whole answers hold a place alike.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from backoffice.database import utcnow
from backoffice.extensions import db
from backoffice.tools.capacity import CHAT_CALLS, ProcessPlaces
from backoffice.tools.llm import MAX_ANSWER_BYTES, ModelServerBusy
from backoffice.tools.models import ChatCall, ChatUsage
from tests.support import assert_problem, count_rows, member_client
from tests.tools.events import parse_events

STREAM = {"message": "count the red widgets", "stream": True}
WHOLE = {"message": "count the red widgets"}


def outcomes(in_db) -> list[str]:
    return in_db(lambda: [row.outcome for row in db.session.scalars(select(ChatUsage))])


def places_held(in_db) -> int:
    return in_db(lambda: count_rows(ChatCall))


def open_stream(client):
    """A streamed call whose first event has arrived (the model server paused after it):
    the call is in flight, holding its places, until the response is closed."""
    response = client.post("/api/chat", json=STREAM, buffered=False)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert next(iter(response.response)).startswith(b"data: ")
    return response


# --- the size of an answer ------------------------------------------------------


def test_a_streamed_answer_over_the_cap_ends_with_an_error_event_and_is_not_relayed(
    chat, fake_llm, in_db
):
    fake_llm.mode = "huge"  # one 20 MB delta
    response = chat.post("/api/chat", json=STREAM)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert len(body) < 64 * 1024  # nothing of the 20 MB was relayed
    [error] = parse_events(body)
    assert error.name == "error"
    assert error.json["status"] == 502
    assert error.json["type"] == "/problems/model-server-error"
    assert error.json["detail"] == "The model server's answer was too large."
    assert outcomes(in_db) == ["failed"]
    assert places_held(in_db) == 0


def test_a_whole_answer_over_the_cap_is_a_502(chat, fake_llm, in_db):
    fake_llm.mode = "huge"
    body = assert_problem(chat.post("/api/chat", json=WHOLE), 502)
    assert body["detail"] == "The model server's answer was too large."
    assert outcomes(in_db) == ["failed"]


def test_the_cap_is_four_mebibytes_as_documented():
    assert MAX_ANSWER_BYTES == 4 * 1024 * 1024


# --- the deadline of a call ----------------------------------------------------


def test_a_stream_past_llm_deadline_ends_with_a_504_error_event(
    make_chat_app, client, fake_llm, in_db
):
    fake_llm.delay = 0.2  # a delta every 0.2 s: each within LLM_TIMEOUT, the whole not
    slow = member_client(make_chat_app(LLM_DEADLINE="1"), client)
    message = {"message": " ".join(["word"] * 40), "stream": True}
    started = time.monotonic()
    events = parse_events(slow.post("/api/chat", json=message).get_data(as_text=True))
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 4  # LLM_DEADLINE, plus at most one wait for the next delta
    assert events[-1].name == "error"
    assert events[-1].json["status"] == 504
    assert events[-1].json["type"] == "/problems/model-server-timeout"
    assert "LLM_DEADLINE" in events[-1].json["detail"]
    assert 1 < len(events) < 40  # some deltas arrived, not the whole answer
    assert outcomes(in_db) == ["timed_out"]
    assert places_held(in_db) == 0


def test_a_whole_answer_past_llm_deadline_is_a_504(make_chat_app, client, fake_llm, in_db):
    fake_llm.mode, fake_llm.delay = "dribble", 0.1  # 8 bytes every 0.1 s
    slow = member_client(make_chat_app(LLM_DEADLINE="1"), client)
    started = time.monotonic()
    body = assert_problem(slow.post("/api/chat", json=WHOLE), 504)
    assert time.monotonic() - started < 4
    assert "LLM_DEADLINE" in body["detail"]
    assert outcomes(in_db) == ["timed_out"]


# --- places per process ----------------------------------------------------------


def test_calls_past_the_process_places_are_503_at_once_and_a_place_comes_back(
    make_chat_app, client, make_user, as_user, fake_llm, in_db
):
    fake_llm.pause_after = 1
    chat_app = make_chat_app(CHAT_CALLS_PER_PROCESS="1")
    first = open_stream(member_client(chat_app, client))
    other = member_client(chat_app, as_user(make_user()))
    try:
        started = time.monotonic()
        for body in (STREAM, WHOLE):  # streamed or not, a call needs a place
            refused = assert_problem(other.post("/api/chat", json=body), 503)
            assert refused["type"] == "/problems/model-server-busy"
        assert time.monotonic() - started < 1  # refused at once, never queued
        assert other.post("/api/chat", json=WHOLE).headers["Retry-After"] == "1"
    finally:
        first.close()
        fake_llm.resume.set()
    assert other.post("/api/chat", json=WHOLE).status_code == 200
    assert len(fake_llm.received) == 2  # the refused calls never reached the model server
    assert places_held(in_db) == 0


def test_a_whole_answer_holds_its_place_while_it_waits(
    make_chat_app, client, make_user, as_user, fake_llm
):
    fake_llm.mode = "slow"  # answers once `resume` is set
    chat_app = make_chat_app(CHAT_CALLS_PER_PROCESS="1")
    waiting = member_client(chat_app, client)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(waiting.post, "/api/chat", json=WHOLE)
        while not fake_llm.received:  # the call is at the model server
            time.sleep(0.01)
        other = member_client(chat_app, as_user(make_user()))
        assert_problem(other.post("/api/chat", json=STREAM), 503)
        fake_llm.resume.set()
        assert answer.result(timeout=10).status_code == 200


def test_process_places_are_given_back_once_and_taken_back_from_an_abandoned_holder():
    places = ProcessPlaces(size=2, lifetime=60)
    first, second = places.take(), places.take()
    with pytest.raises(ModelServerBusy):
        places.take()
    places.give_back(first)
    places.give_back(first)  # twice: still one place
    third = places.take()
    assert len({first, second, third}) == 3
    with pytest.raises(ModelServerBusy):
        places.take()
    assert places.in_use == 2
    abandoned = ProcessPlaces(size=1, lifetime=0)
    abandoned.take()  # never given back: past its lifetime, the place is free again
    time.sleep(0.001)
    abandoned.take()


# --- places per user, across processes ---------------------------------------------


def test_a_users_calls_in_flight_are_bounded_across_processes(
    make_chat_app, client, make_user, as_user, fake_llm, in_db
):
    fake_llm.pause_after = 1
    one, two = (make_chat_app(CHAT_CALLS_PER_USER="1") for _ in range(2))
    first = open_stream(member_client(one, client))
    try:
        for body in (STREAM, WHOLE):
            refused = assert_problem(member_client(two, client).post("/api/chat", json=body), 429)
            assert refused["type"] == "/problems/too-many-chat-calls"
            assert "CHAT_CALLS_PER_USER" in refused["detail"]
        response = member_client(two, client).post("/api/chat", json=WHOLE)
        assert response.headers["Retry-After"] == "5"
        # Another member is not held back by the first one's call.
        other = open_stream(member_client(two, as_user(make_user())))
        other.close()
    finally:
        first.close()
        fake_llm.resume.set()
    assert member_client(two, client).post("/api/chat", json=WHOLE).status_code == 200
    assert places_held(in_db) == 0


def test_many_simultaneous_calls_of_one_user_get_exactly_their_places(
    make_chat_app, client, fake_llm, in_db
):
    fake_llm.pause_after = 1
    limit, processes, attempts = 2, 3, 12
    # Places enough in each process: only the user's bound refuses here.
    roomy = {"SERVER_THREADS": "8", "CHAT_CALLS_PER_PROCESS": "4"}
    apps = [make_chat_app(CHAT_CALLS_PER_USER=str(limit), **roomy) for _ in range(processes)]
    started, answered, done = (
        threading.Barrier(attempts),
        threading.Barrier(attempts + 1),
        threading.Event(),
    )

    def attempt(n: int) -> int:
        caller = member_client(apps[n % processes], client)
        started.wait()
        response = caller.post("/api/chat", json=STREAM, buffered=False)
        answered.wait()
        done.wait(30)  # a stream stays open (its places held) until the test has counted
        response.close()  # in the thread that opened it (its contexts are this thread's)
        return response.status_code

    with ThreadPoolExecutor(attempts) as pool:
        statuses = pool.map(attempt, range(attempts))
        answered.wait()
        try:
            assert places_held(in_db) == limit
        finally:
            done.set()
            fake_llm.resume.set()
        assert sorted(statuses) == [200] * limit + [429] * (attempts - limit)
    assert places_held(in_db) == 0


def test_a_place_left_by_a_dead_process_is_taken_back_when_it_expires(
    chat, make_chat_app, client, member, fake_llm, in_db
):
    limited = member_client(make_chat_app(CHAT_CALLS_PER_USER="1"), client)

    def held(expires_in: timedelta) -> None:
        def add() -> None:
            db.session.execute(
                insert(CHAT_CALLS).values(
                    user_id=member.id, slot=0, holder=uuid.uuid4(), expires_at=utcnow() + expires_in
                )
            )
            db.session.commit()

        in_db(add)

    held(timedelta(minutes=5))  # a live call elsewhere
    assert_problem(limited.post("/api/chat", json=WHOLE), 429)
    in_db(lambda: (db.session.execute(CHAT_CALLS.delete()), db.session.commit()))
    held(-timedelta(seconds=1))  # a call whose process died: its place has expired
    assert limited.post("/api/chat", json=WHOLE).status_code == 200
    assert places_held(in_db) == 0
