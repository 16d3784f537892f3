"""`GET {prefix}/chat/usage`: every chat call and its tokens; yours, or everyone's for admins.
And the per-user limit on chat calls (`CHAT_RATE_LIMIT`), in memory or in Redis."""

from __future__ import annotations

import os

import pytest

from tests.support import assert_problem, eventually, member_client

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
STORAGES = ["database://", "memory://", *([TEST_REDIS_URL] if TEST_REDIS_URL else [])]


def ask(client, message="hi", **extra):
    """One chat call, read to its end (a stream is recorded once it is over)."""
    response = client.post("/api/chat", json={"message": message, **extra})
    assert response.status_code == 200, response.get_data(as_text=True)
    response.get_data()
    return response


@pytest.fixture
def others(chat_app, make_user, as_user):
    """Another member's client and an admin's, both on the app that reaches the model."""
    other, admin = make_user(), make_user(role="admin")
    return other, member_client(chat_app, as_user(other)), member_client(chat_app, as_user(admin))


def test_members_see_their_own_calls_newest_first(chat, member, others):
    other, other_chat, _admin = others
    ask(chat, "one")
    ask(chat, "two words", stream=False)
    ask(other_chat, "three")
    body = chat.get("/api/chat/usage").json
    assert [row["prompt_tokens"] for row in body["data"]] == [2, 1]
    assert {row["user_id"] for row in body["data"]} == {str(member.id)}
    assert body["next_cursor"] is None
    first = body["data"][0]
    assert set(first) == {
        "id",
        "user_id",
        "model",
        "streamed",
        "outcome",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "latency_ms",
        "created_at",
        "updated_at",
    }
    assert (first["model"], first["outcome"], first["streamed"]) == (
        "fake-model-1",
        "completed",
        False,
    )
    assert first["created_at"].endswith("+00:00")
    # Filtering by someone else's id shows nothing of theirs.
    assert chat.get(f"/api/chat/usage?user_id={other.id}").json["data"] == []


def test_admins_see_everyones_calls_and_can_filter_by_user(chat, member, others):
    other, other_chat, admin_chat = others
    ask(chat, "one")
    ask(other_chat, "two")
    ask(other_chat, "three", stream=True)
    everyone = admin_chat.get("/api/chat/usage").json["data"]
    assert [row["user_id"] for row in everyone] == [str(other.id), str(other.id), str(member.id)]
    assert [row["streamed"] for row in everyone] == [True, False, False]
    theirs = admin_chat.get(f"/api/chat/usage?user_id={other.id}").json["data"]
    assert len(theirs) == 2


def test_usage_is_paginated_with_a_cursor_and_a_link(chat):
    for n in range(3):
        ask(chat, f"call {n}")
    first = chat.get("/api/chat/usage?limit=2")
    assert len(first.json["data"]) == 2
    assert first.json["next_cursor"]
    assert 'rel="next"' in first.headers["Link"]
    second = chat.get(f"/api/chat/usage?limit=2&cursor={first.json['next_cursor']}").json
    assert len(second["data"]) == 1
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [("user_id=nope", "user_id"), ("limit=0", "limit"), ("cursor=forged", "cursor"), ("x=1", "x")],
)
def test_bad_query_parameters_are_400(chat, query, field):
    assert_problem(chat.get(f"/api/chat/usage?{query}"), 400, field)


# --- the limit ----------------------------------------------------------------------


@pytest.fixture(params=STORAGES, ids=lambda uri: uri.split(":")[0])
def limited(request, make_chat_app):
    return make_chat_app(RATELIMIT_STORAGE_URI=request.param, CHAT_RATE_LIMIT="2 per 2 seconds")


def test_past_the_limit_chat_is_429_with_retry_after_for_that_user_only(
    limited, client, fake_llm, make_user, as_user, in_db
):
    mine = member_client(limited, client)
    ask(mine)
    ask(mine, stream=True)
    blocked = mine.post("/api/chat", json={"message": "one more"})
    assert_problem(blocked, 429)
    assert 1 <= int(blocked.headers["Retry-After"]) <= 2
    assert len(fake_llm.received) == 2  # the refused call never reached the model server
    assert len(mine.get("/api/chat/usage").json["data"]) == 2
    # Someone else still may; and reading usage is not a chat call.
    ask(member_client(limited, as_user(make_user())))

    # The window ends (Retry-After is whole seconds, truncated: wait for the block to lift).
    def chat_once_the_window_ends():
        response = mine.post("/api/chat", json={"message": "later"})
        if response.status_code != 200:
            assert_problem(response, 429)
        return response

    eventually(chat_once_the_window_ends, lambda r: r.status_code == 200, timeout=5)


def test_the_limit_counts_the_user_whatever_credential_they_use(limited, client):
    key = client.post("/api/auth/api-keys", json={"name": "bot"}).json["key"]
    by_key = limited.test_client()
    by_key.environ_base["HTTP_X_API_KEY"] = key
    ask(member_client(limited, client))
    ask(by_key)
    assert_problem(by_key.post("/api/chat", json={"message": "hi"}), 429)
    assert_problem(member_client(limited, client).post("/api/chat", json={"message": "hi"}), 429)
