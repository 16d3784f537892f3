"""`POST {prefix}/chat`: the gateway to a real (fake) OpenAI-compatible server over HTTP.

Every failure of the model server becomes one of our problems: 503 not configured, 504 no
answer in time, 502 anything else. Its own error text and our API key never reach a client
or a log line; the log line says what happened upstream (status, latency, attempts).
"""

from __future__ import annotations

import socket

import httpx
import pytest
from sqlalchemy import select
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from backoffice.extensions import db
from backoffice.tools.llm import ChatGateway
from backoffice.tools.models import ChatUsage
from bench.fake_llm import UPSTREAM_ERROR_TEXT
from tests.support import LLM_KEY, MODEL, assert_problem, count_rows, member_client


def usage_rows(in_db) -> list[ChatUsage]:
    return in_db(lambda: list(db.session.scalars(select(ChatUsage).order_by(ChatUsage.id))))


def llm_lines(logs: list[dict]) -> list[dict]:
    return [line for line in logs if line["event"] == "llm_call"]


def test_chat_answers_with_the_model_reply_and_its_token_count(chat, fake_llm, member, in_db):
    response = chat.post("/api/chat", json={"message": "  How many widgets?  "})
    assert response.status_code == 200
    assert response.json == {
        "success": True,
        "user_message": "How many widgets?",
        "assistant_message": "You said: How many widgets?",
        "tokens_used": 3 + 5,
    }
    [received] = fake_llm.received
    assert received.path == "/v1/chat/completions"
    assert received.authorization == f"Bearer {LLM_KEY}"
    assert received.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "How many widgets?"}],
        "stream": False,
    }
    [row] = usage_rows(in_db)
    assert (row.user_id, row.model, row.streamed, row.outcome) == (
        member.id,
        MODEL,
        False,
        "completed",
    )
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (3, 5, 8)
    assert row.latency_ms >= 0


def test_a_system_prompt_goes_first(chat, fake_llm):
    chat.post("/api/chat", json={"message": "Hi", "system": "Answer in French."})
    assert fake_llm.received[0].body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
    ]


def test_an_api_key_with_the_tools_scope_may_chat(chat_app, client, fake_llm):
    key = client.post("/api/auth/api-keys", json={"name": "bot", "scopes": ["tools"]}).json["key"]
    response = chat_app.test_client().post(
        "/api/chat", json={"message": "by key"}, headers={"X-API-Key": key}
    )
    assert response.status_code == 200
    assert response.json["assistant_message"] == "You said: by key"


def test_without_a_model_server_configured_chat_is_503(client, in_db):
    """The session's app has no LLM_BASE_URL: nothing is sent, nothing is recorded."""
    body = assert_problem(client.post("/api/chat", json={"message": "Hello?"}), 503)
    assert body["type"] == "/problems/chat-not-configured"
    assert "LLM_BASE_URL" in body["detail"]
    assert in_db(lambda: count_rows(ChatUsage)) == 0


def test_a_base_url_without_a_model_is_not_configured_either(make_chat_app, client, fake_llm):
    unconfigured = member_client(make_chat_app(LLM_MODEL=""), client)
    assert_problem(unconfigured.post("/api/chat", json={"message": "Hello?"}), 503)
    assert fake_llm.received == []


@pytest.mark.parametrize(
    ("mode", "upstream_status"), [("error", 500), ("garbage", 200), ("wrong_shape", 200)]
)
def test_an_upstream_error_garbage_or_the_wrong_shape_is_502_in_our_words(
    chat, fake_llm, in_db, caplog, mode, upstream_status
):
    fake_llm.mode = mode
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = chat.post("/api/chat", json={"message": "Hello?"})
    body = assert_problem(response, 502)
    assert body["type"] == "/problems/model-server-error"
    assert body["detail"].startswith("The model server")
    text = response.get_data(as_text=True)
    assert UPSTREAM_ERROR_TEXT not in text
    assert LLM_KEY not in text
    [line] = llm_lines(logs)
    assert line["upstream_status"] == upstream_status
    assert line["latency_ms"] >= 0
    assert (line["outcome"], line["attempts"], line["log_level"]) == ("failed", 1, "warning")
    assert line["request_id"] == response.headers["X-Request-ID"]
    logged = repr(logs) + caplog.text
    assert UPSTREAM_ERROR_TEXT not in logged
    assert LLM_KEY not in logged
    [row] = usage_rows(in_db)
    assert (row.outcome, row.total_tokens) == ("failed", None)


def test_a_model_server_slower_than_the_timeout_is_504_and_not_retried(
    make_chat_app, client, fake_llm, in_db
):
    fake_llm.mode = "slow"
    slow = member_client(make_chat_app(LLM_TIMEOUT="0.3"), client)
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = slow.post("/api/chat", json={"message": "Hello?"})
    body = assert_problem(response, 504)
    assert body["type"] == "/problems/model-server-timeout"
    assert len(fake_llm.received) == 1  # the request was sent: a retry could spend twice
    [line] = llm_lines(logs)
    assert (line["outcome"], line["reason"], line["upstream_status"]) == (
        "timed_out",
        "ReadTimeout",
        None,
    )
    assert line["latency_ms"] >= 300
    [row] = usage_rows(in_db)
    assert row.outcome == "timed_out"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_model_server_is_502_after_one_retry(make_chat_app, client, in_db):
    down = member_client(make_chat_app(LLM_BASE_URL=f"http://127.0.0.1:{_closed_port()}"), client)
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = down.post("/api/chat", json={"message": "Hello?"})
    body = assert_problem(response, 502)
    assert body["detail"] == "The model server could not be reached."
    [line] = llm_lines(logs)
    assert (line["attempts"], line["reason"], line["upstream_status"]) == (2, "ConnectError", None)
    assert [row.outcome for row in usage_rows(in_db)] == ["failed"]


class FailsToConnectOnce(httpx.HTTPTransport):
    """The real transport, except that the first connection attempt is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts == 1:
            raise httpx.ConnectError("Connection refused", request=request)
        return super().handle_request(request)


def test_a_refused_connection_is_retried_once_and_then_answered(fake_llm):
    transport = FailsToConnectOnce()
    gateway = ChatGateway(fake_llm.url, LLM_KEY, MODEL, 5, 5, 60, transport=transport)
    try:
        completion = gateway.complete([{"role": "user", "content": "again"}])
    finally:
        gateway.close()
    assert completion.content == "You said: again"
    assert transport.attempts == 2
    assert len(fake_llm.received) == 1


def test_one_pooled_client_per_process_reuses_its_connection(chat, chat_app, fake_llm):
    gateway = chat_app.extensions["chat_gateway"]
    assert chat.post("/api/chat", json={"message": "one"}).status_code == 200
    first = gateway.http_client()
    assert chat.post("/api/chat", json={"message": "two"}).status_code == 200
    assert gateway.http_client() is first
    ports = {received.client_port for received in fake_llm.received}
    assert len(ports) == 1  # the second call came over the first call's connection


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["message"]),
        ({"message": "   "}, ["message"]),
        ({"message": 42}, ["message"]),
        ({"message": "x" * 32_001}, ["message"]),
        ({"message": "hi", "stream": "yes"}, ["stream"]),
        ({"message": "hi", "system": ""}, ["system"]),
        ({"message": "hi", "temperature": 2}, ["temperature"]),
    ],
)
def test_invalid_requests_are_422_and_never_reach_the_model_server(
    chat, fake_llm, in_db, body, fields
):
    assert_problem(chat.post("/api/chat", json=body), 422, *fields)
    assert fake_llm.received == []
    assert in_db(lambda: count_rows(ChatUsage)) == 0


def test_without_credentials_chat_is_401(chat_app, fake_llm):
    response = chat_app.test_client().post("/api/chat", json={"message": "hi"})
    assert_problem(response, 401)
    assert fake_llm.received == []


def test_usage_is_recorded_for_the_caller(chat_app, chat, member, make_user, as_user, in_db):
    other = make_user()
    other_chat = member_client(chat_app, as_user(other))
    chat.post("/api/chat", json={"message": "mine"})
    other_chat.post("/api/chat", json={"message": "theirs and longer"})
    rows = usage_rows(in_db)
    assert [(row.user_id, row.prompt_tokens) for row in rows] == [(member.id, 1), (other.id, 3)]
