"""`POST {prefix}/chat` with `"stream": true`: server-sent events relayed as they arrive.

data: {"delta": ...}  (one per piece)   event: usage   data: [DONE]
or, when the model server fails part-way:   event: error  (a problem), and no [DONE]
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from backoffice.extensions import db
from backoffice.tools.models import ChatUsage
from bench.fake_llm import UPSTREAM_ERROR_TEXT
from tests.support import (
    LLM_KEY,
    MODEL,
    assert_problem,
    count_rows,
    eventually,
    member_client,
)
from tests.tools.events import answer_of, parse_events

STREAM = {"message": "count the red widgets", "stream": True}
ANSWER = "You said: count the red widgets"


def usage_rows(in_db) -> list[ChatUsage]:
    return in_db(lambda: list(db.session.scalars(select(ChatUsage).order_by(ChatUsage.id))))


def test_a_stream_is_deltas_then_usage_then_done(chat, fake_llm, member, in_db):
    response = chat.post("/api/chat", json=STREAM)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache, no-store"  # private, never stored
    assert response.headers["X-Accel-Buffering"] == "no"
    events = parse_events(response.get_data(as_text=True))
    assert [event.name for event in events] == ["message"] * 6 + ["usage", "message"]
    assert answer_of(events[:-2]) == ANSWER
    assert [event.json["delta"] for event in events[:2]] == ["You ", "said: "]
    assert events[-2].json == {"tokens_used": 10, "prompt_tokens": 4, "completion_tokens": 6}
    assert events[-1].data == "[DONE]"
    [received] = fake_llm.received
    assert received.authorization == f"Bearer {LLM_KEY}"
    assert received.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "count the red widgets"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    [row] = usage_rows(in_db)
    assert (row.user_id, row.streamed, row.outcome, row.total_tokens) == (
        member.id,
        True,
        "completed",
        10,
    )


def test_deltas_arrive_one_by_one_while_the_model_server_is_still_answering(chat, fake_llm, in_db):
    fake_llm.pause_after = 2  # the model server holds the rest back until `resume`
    response = chat.post("/api/chat", json=STREAM, buffered=False)
    try:
        chunks = iter(response.response)
        first, second = next(chunks), next(chunks)
        assert first == b'data: {"delta":"You "}\n\n'
        assert second == b'data: {"delta":"said: "}\n\n'
        # Two events are here and the upstream call is not over: nothing recorded yet.
        assert not fake_llm.resume.is_set()
        assert in_db(lambda: count_rows(ChatUsage)) == 0
        fake_llm.resume.set()
        rest = b"".join(chunks).decode()
    finally:
        response.close()
    events = parse_events(first.decode() + second.decode() + rest)
    assert answer_of(events[:-2]) == ANSWER
    assert events[-1].data == "[DONE]"
    assert [row.outcome for row in usage_rows(in_db)] == ["completed"]


@pytest.mark.parametrize("mode", ["cut", "truncated", "garbage"])
def test_a_stream_that_breaks_off_ends_with_an_error_event_and_no_done(chat, fake_llm, in_db, mode):
    fake_llm.mode = mode
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = chat.post("/api/chat", json=STREAM)
        body = response.get_data(as_text=True)  # the stream is read (and logged) here
    assert response.status_code == 200
    events = parse_events(body)
    error = events[-1]
    assert error.name == "error"
    assert "[DONE]" not in [event.data for event in events]
    assert "usage" not in [event.name for event in events]
    problem = error.json
    assert problem["status"] == 502
    assert problem["type"] == "/problems/model-server-error"
    assert problem["instance"] == "/api/chat"
    assert problem["request_id"] == response.headers["X-Request-ID"]
    if mode != "garbage":
        assert answer_of(events[:-1]) == "You said: count "  # the half that did arrive
    [line] = [line for line in logs if line["event"] == "llm_call"]
    assert (line["outcome"], line["upstream_status"]) == ("failed", 200)
    assert [row.outcome for row in usage_rows(in_db)] == ["failed"]


def test_a_stream_that_stalls_past_the_timeout_ends_with_a_504_error_event(
    make_chat_app, client, fake_llm, in_db
):
    fake_llm.pause_after = 1  # and never resumed
    stalled = member_client(make_chat_app(LLM_TIMEOUT="0.3"), client)
    response = stalled.post("/api/chat", json=STREAM)
    events = parse_events(response.get_data(as_text=True))
    assert [event.name for event in events] == ["message", "error"]
    assert events[-1].json["status"] == 504
    assert events[-1].json["type"] == "/problems/model-server-timeout"
    assert [row.outcome for row in usage_rows(in_db)] == ["timed_out"]


@pytest.mark.parametrize(("mode", "status"), [("error", 502), ("wrong_shape", 502), ("slow", 504)])
def test_a_failure_before_the_first_delta_is_a_plain_problem(
    make_chat_app, client, fake_llm, in_db, mode, status
):
    fake_llm.mode = mode
    quick = member_client(make_chat_app(LLM_TIMEOUT="0.3"), client)
    response = quick.post("/api/chat", json=STREAM)
    assert_problem(response, status)
    assert UPSTREAM_ERROR_TEXT not in response.get_data(as_text=True)
    assert len(usage_rows(in_db)) == 1


def test_the_client_going_away_closes_the_upstream_request(chat, fake_llm, in_db):
    fake_llm.pause_after = 1
    fake_llm.delay = 0.05
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = chat.post("/api/chat", json=STREAM, buffered=False)
        chunks = iter(response.response)
        assert next(chunks) == b'data: {"delta":"You "}\n\n'
        response.close()  # what a WSGI server does when the client disconnects
    fake_llm.resume.set()
    # The model server's next writes fail: its client, our gateway, has hung up.
    eventually(lambda: fake_llm.disconnects, lambda count: count == 1, timeout=10)
    [line] = [line for line in logs if line["event"] == "llm_call"]
    assert line["outcome"] == "cancelled"
    [row] = usage_rows(in_db)
    assert (row.outcome, row.total_tokens) == ("cancelled", None)


def test_the_stream_never_carries_the_api_key_or_the_upstream_error_text(chat, fake_llm, caplog):
    with capture_logs(processors=[merge_contextvars]) as logs:
        bodies = [chat.post("/api/chat", json=STREAM).get_data(as_text=True)]
        for mode in ("error", "cut", "garbage"):
            fake_llm.mode = mode
            bodies.append(chat.post("/api/chat", json=STREAM).get_data(as_text=True))
    assert all(received.authorization == f"Bearer {LLM_KEY}" for received in fake_llm.received)
    everything = "".join(bodies) + repr(logs) + caplog.text
    assert LLM_KEY not in everything
    assert UPSTREAM_ERROR_TEXT not in everything
