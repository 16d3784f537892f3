"""The tools in the OpenAPI document, and their settings (docs/configuration.md)."""

from __future__ import annotations

import pytest

from backoffice.config import ConfigError, load_settings

PROBLEM = "application/problem+json"


@pytest.fixture
def paths(anonymous) -> dict:
    return anonymous.get("/openapi.json").json["paths"]


def test_every_tool_is_documented_with_its_scope_and_problems(paths):
    expected = {
        ("/api/process", "post"): {"200", "400", "401", "403", "413", "415", "422"},
        ("/api/divide", "get"): {"200", "400", "401", "403", "422"},
        ("/api/chat", "post"): {
            "200",
            "400",
            "401",
            "403",
            "413",
            "415",
            "422",
            "429",
            "502",
            "503",
            "504",
        },
        ("/api/chat/usage", "get"): {"200", "400", "401", "403"},
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), path
        assert {"ApiKeyAuth": ["tools"]} in operation["security"]
        assert {"BearerAuth": ["tools"]} in operation["security"]
        for status in statuses - {"200"}:
            assert PROBLEM in operation["responses"][status]["content"], (path, status)


def test_the_chat_answer_is_json_or_an_event_stream(paths):
    ok = paths["/api/chat"]["post"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/ChatOut")
    stream = ok["content"]["text/event-stream"]
    # The schema of one event (OpenAPI's convention for text/event-stream, as Schemathesis
    # reads it): its `data` is JSON, or `[DONE]`.
    assert stream["schema"]["properties"]["data"] == {"type": "string"}
    assert stream["schema"]["properties"]["event"]["enum"] == ["message", "usage", "error"]
    assert "data: [DONE]" in stream["example"]
    assert "event: error" in ok["description"]


def test_divide_documents_its_query_parameters(paths):
    parameters = {p["name"]: p for p in paths["/api/divide"]["get"]["parameters"]}
    assert parameters["a"]["required"]
    assert parameters["b"]["required"]


def test_chat_settings_have_safe_defaults():
    settings = load_settings({})
    assert (settings["LLM_BASE_URL"], settings["LLM_MODEL"], settings["LLM_API_KEY"]) == (
        "",
        "",
        "",
    )
    assert settings["LLM_TIMEOUT"] == 30.0
    assert settings["LLM_CONNECT_TIMEOUT"] == 5.0
    assert settings["CHAT_RATE_LIMIT"] == "20 per minute"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
        ("http://127.0.0.1:8001/", "http://127.0.0.1:8001"),
        ("https://api.example.com/v1", "https://api.example.com"),
        ("https://api.example.com/openai/v1/", "https://api.example.com/openai"),
        ("", ""),
    ],
)
def test_the_base_url_is_the_servers_root_with_or_without_v1(given, expected):
    assert load_settings({"LLM_BASE_URL": given})["LLM_BASE_URL"] == expected


@pytest.mark.parametrize(
    "environ",
    [
        {"LLM_BASE_URL": "ftp://models.example.com"},
        {"LLM_BASE_URL": "127.0.0.1:8001"},
        {"LLM_TIMEOUT": "0"},
        {"LLM_TIMEOUT": "nan"},
        {"LLM_CONNECT_TIMEOUT": "-1"},
        {"LLM_MODEL": "m" * 201},
        {"CHAT_RATE_LIMIT": "lots"},
    ],
)
def test_unusable_chat_settings_are_refused_at_start(environ):
    with pytest.raises(ConfigError):
        load_settings(environ)
