"""Fixtures for the tools: a fake model server, and apps whose chat gateway talks to it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from bench.fake_llm import FakeLLM, serving
from tests.support import LLM_KEY, MODEL, member_client


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A real OpenAI-compatible HTTP server on 127.0.0.1, answering as a test tells it to."""
    with serving() as server:
        yield server


@pytest.fixture
def make_chat_app(
    app: APIFlask, database_url: str, make_app: Callable[..., APIFlask], fake_llm: FakeLLM
) -> Iterator[Callable[..., APIFlask]]:
    """Apps on the test's database whose gateway calls `fake_llm` (settings overridable)."""
    made: list[APIFlask] = []

    def make(**overrides: str) -> APIFlask:
        settings = {
            "DATABASE_URL": database_url,
            "LLM_BASE_URL": fake_llm.url,
            "LLM_MODEL": MODEL,
            "LLM_API_KEY": LLM_KEY,
            "LLM_TIMEOUT": "5",
            "CHAT_RATE_LIMIT": "1000 per minute",
            **overrides,
        }
        made.append(make_app(**settings))
        made[-1].config["RATELIMIT_KEY_PREFIX"] = uuid.uuid4().hex
        return made[-1]

    yield make
    for chat_app in made:
        chat_app.extensions["chat_gateway"].close()


@pytest.fixture
def chat_app(make_chat_app: Callable[..., APIFlask]) -> APIFlask:
    return make_chat_app()


@pytest.fixture
def chat(chat_app: APIFlask, client: FlaskClient) -> FlaskClient:
    """The member's client, on the app that talks to the fake model server."""
    return member_client(chat_app, client)
