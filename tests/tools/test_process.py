"""`POST {prefix}/process`: the text upper-cased, its length and its words (PRODUCT.md §2 Tools)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.items.test_properties import BIDI_CONTROLS, shows
from tests.support import assert_problem

#: What the API trims: Unicode's White_Space property (str.strip() also takes \x1c-\x1f).
UNICODE_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
MAX = 100_000

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def process(client, text, **kwargs):
    return client.post("/api/process", json={"input": text}, **kwargs)


def test_process_upper_cases_and_counts_characters_and_words(client):
    response = process(client, "Hello brave new world")
    assert response.status_code == 200
    assert response.json == {
        "success": True,
        "input": "Hello brave new world",
        "result": {"processed": "HELLO BRAVE NEW WORLD", "length": 21, "words": 4},
    }


def test_unicode_is_counted_in_characters_and_upper_cased_by_unicode_rules(client):
    body = process(client, "straße café 東京 😀").json
    assert body["input"] == "straße café 東京 😀"
    # "ß" upper-cases to "SS": `length` counts the input, not the output.
    assert body["result"] == {"processed": "STRASSE CAFÉ 東京 😀", "length": 16, "words": 4}


def test_surrounding_white_space_is_trimmed_and_inner_white_space_splits_words(client):
    body = process(client, "  one\ttwo\nthree\u3000four  ").json
    assert body["input"] == "one\ttwo\nthree\u3000four"
    assert body["result"]["words"] == 4
    assert body["result"]["length"] == 18


def test_exactly_the_bound_is_accepted_and_one_more_character_is_422(client):
    assert process(client, "a" * MAX).json["result"]["length"] == MAX
    body = assert_problem(process(client, "a" * (MAX + 1)), 422, "input")
    assert "100000" in body["errors"][0]["message"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\u3000"])
def test_empty_input_is_422(client, text):
    assert_problem(process(client, text), 422, "input")


@pytest.mark.parametrize("value", [None, 42, 4.2, True, ["a"], {"text": "a"}])
def test_input_that_is_not_a_string_is_422(client, value):
    assert_problem(process(client, value), 422, "input")


def test_missing_input_and_unknown_fields_are_422_naming_them(client):
    assert_problem(client.post("/api/process", json={"text": "hi"}), 422, "input", "text")


def test_control_characters_are_422(client):
    assert_problem(process(client, "bell\x07"), 422, "input")


def test_malformed_json_is_400_and_another_content_type_is_415(client):
    assert_problem(
        client.post("/api/process", data="{", headers={"Content-Type": "application/json"}), 400
    )
    assert_problem(client.post("/api/process", json=["not", "an", "object"]), 400)
    assert_problem(client.post("/api/process", data={"input": "form"}), 415)


def test_a_body_over_the_size_limit_is_413(client):
    assert_problem(process(client, "a" * (1024 * 1024)), 413)


def test_an_api_key_with_the_tools_scope_may_process(anonymous, client):
    key = client.post("/api/auth/api-keys", json={"name": "text robot", "scopes": ["tools"]})
    response = process(anonymous, "by key", headers={"X-API-Key": key.json["key"]})
    assert response.status_code == 200
    assert response.json["result"]["processed"] == "BY KEY"


def test_a_key_made_before_the_tools_scope_keeps_its_scopes_and_gets_no_new_one(anonymous, client):
    """Keys are created with explicit scopes; adding a scope later does not widen them."""
    legacy = client.post(
        "/api/auth/api-keys",
        json={"name": "old robot", "scopes": ["items", "jobs", "todos", "users"]},
    ).json["key"]
    headers = {"X-API-Key": legacy}
    assert_problem(process(anonymous, "no", headers=headers), 403)
    assert_problem(anonymous.get("/api/divide?a=1&b=2", headers=headers), 403)
    assert anonymous.get("/api/items", headers=headers).status_code == 200


def test_every_member_holds_the_tools_scope(client):
    created = client.post("/api/auth/api-keys", json={"name": "default scopes"}).json
    assert "tools" in created["scopes"]


def test_without_credentials_it_is_401(anonymous):
    response = process(anonymous, "hi")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _expected(text: str) -> dict | None:
    """What the API answers for `text`, or None when it must refuse it (422)."""
    trimmed = text.strip(UNICODE_WHITE_SPACE)
    controls = any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in trimmed)
    # Text people read must show something, and reorder nothing (tests/test_visible_text.py).
    hidden = not any(shows(char) for char in trimmed) or bool(BIDI_CONTROLS & set(trimmed))
    if not 1 <= len(trimmed) <= MAX or controls or hidden:
        return None
    return {"processed": trimmed.upper(), "length": len(trimmed), "words": len(trimmed.split())}


@PROPERTY_SETTINGS
@given(text=st.text(max_size=300) | st.text(alphabet=" \t\nab\u00dfé東😀\u3000", max_size=50))
@example(text="Hello world")
@example(text="\x00")
@example(text="\u0130stanbul")  # "İ" lower/upper corner cases
@example(text="\U0001d11e clef")  # outside the BMP
def test_any_text_is_processed_exactly_or_refused_with_422(client, text):
    response = process(client, text)
    expected = _expected(text)
    if expected is None:
        assert_problem(response, 422, "input")
    else:
        assert response.status_code == 200, response.json
        assert response.json["result"] == expected
        assert response.json["input"] == text.strip(UNICODE_WHITE_SPACE)
