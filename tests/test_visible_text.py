"""Text people read shows something and shows what it is: every text field of every
capability refuses text with no visible character (a zero-width space, a lone combining
mark, tag characters) and the bidirectional controls that reorder text, with 422 naming
the field, and keeps right-to-left text, direction marks and emoji sequences as sent.
The rule lives once (`backoffice.schemas`, `backoffice.visible_text`), and the OpenAPI
document's `pattern` says the same as the code for every code point but the marks."""

from __future__ import annotations

import sys
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError

from backoffice.auth.models import ApiKey
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.orders.models import Order
from backoffice.schemas import multi_line, single_line
from backoffice.todos.models import Todo
from backoffice.tools.schemas import ChatIn
from backoffice.users.models import User
from backoffice.visible_text import INVISIBLE
from tests.items.factories import create_item
from tests.support import assert_problem, count_rows

#: (what it is, the text): each refused wherever text is read.
REFUSED = [
    ("zero-width space alone", "\u200b"),
    ("lone combining mark", "\u0301"),
    ("combining marks only", "\u0301\u0308\u20dd"),
    ("tag characters", "\U000e0041\U000e0042\U000e007f"),
    ("Hangul filler", "\u3164"),
    ("blank braille pattern", "\u2800"),
    ("invisibles amid spaces", " \u200d\ufe0f\u2060 \u00ad "),
    ("right-to-left override inside a name", "Ann\u202eexe.txt"),
    ("left-to-right embedding", "\u202aAnn"),
    ("first-strong isolate", "Ann \u2068x\u2069"),
]
#: (what it is, the text): each accepted and kept as sent.
ACCEPTED = [
    ("Hebrew", "שלום עולם"),
    ("Arabic", "مرحبا بالعالم"),
    ("right-to-left mark beside digits", "\u05d3\u05d9\u05e8\u05d4 12\u200f"),
    ("emoji with zero-width joiners", "\U0001f469\u200d\U0001f4bb team"),
    (
        "flag of tag characters",
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    ),
    ("letter and combining mark", "Jose\u0301"),
    ("Thai with its marks", "ภาษาไทย"),
]


@dataclass(frozen=True)
class TextField:
    """A text field of a capability: how to send `text` in it, and where it is stored."""

    label: str
    method: str
    path: str
    body: Callable[[str, dict[str, Any]], dict[str, Any]]
    field: str
    model: type | None
    column: str
    caller: str = "member"


FIELDS = [
    TextField("item name", "POST", "/api/items", lambda t, _: {"name": t}, "name", Item, "name"),
    TextField(
        "item description",
        "POST",
        "/api/items",
        lambda t, _: {"name": "Widget", "description": t},
        "description",
        Item,
        "description",
    ),
    TextField("todo task", "POST", "/api/todos", lambda t, _: {"task": t}, "task", Todo, "task"),
    TextField(
        "API key name",
        "POST",
        "/api/auth/api-keys",
        lambda t, _: {"name": t},
        "name",
        ApiKey,
        "name",
    ),
    TextField(
        "order note",
        "POST",
        "/api/orders",
        lambda t, ctx: {"lines": [{"item_id": ctx["item"], "quantity": 1}], "note": t},
        "note",
        Order,
        "note",
    ),
    TextField("own name", "PATCH", "/api/users/me", lambda t, _: {"name": t}, "name", User, "name"),
    TextField(
        "sign-up name",
        "POST",
        "/api/users",
        lambda t, _: {
            "name": t,
            "email": f"{uuid.uuid4().hex}@example.com",
            "password": "a-secret",
        },
        "name",
        User,
        "name",
        caller="admin",  # admins are not held to the sign-up limit per address
    ),
    TextField(
        "text to process", "POST", "/api/process", lambda t, _: {"input": t}, "input", None, ""
    ),
]


@pytest.fixture
def send(as_user, member, admin, client, in_db):
    """Send `text` in `field` as its caller: the answer, and the rows of its table before."""
    item = create_item(client, quantity=1000)["id"]
    callers = {"member": client, "admin": as_user(admin)}

    def sending(field: TextField, text: str) -> tuple[Any, int]:
        before = in_db(lambda: count_rows(field.model)) if field.model else 0
        http = callers[field.caller]
        return http.open(
            field.path, method=field.method, json=field.body(text, {"item": item})
        ), before

    return sending


@pytest.mark.parametrize("field", FIELDS, ids=[f.label for f in FIELDS])
@pytest.mark.parametrize(("kind", "text"), REFUSED, ids=[kind for kind, _ in REFUSED])
def test_text_that_shows_nothing_or_reorders_is_422_naming_the_field(
    send, in_db, field, kind, text
):
    response, before = send(field, text)
    body = assert_problem(response, 422, field.field)
    message = body["errors"][0]["message"]
    assert message.endswith(
        (
            "visible character, not only white space, invisible or combining characters",
            "(U+202A-U+202E, U+2066-U+2069)",
        )
    )
    if field.model:
        assert in_db(lambda: count_rows(field.model)) == before
    if field.model is User and field.method == "PATCH":
        assert in_db(lambda: db.session.scalars(db.select(User.name)).all()) == ["Test User"] * 2


@pytest.mark.parametrize("field", FIELDS, ids=[f.label for f in FIELDS])
@pytest.mark.parametrize(("kind", "text"), ACCEPTED, ids=[kind for kind, _ in ACCEPTED])
def test_right_to_left_text_marks_and_emoji_sequences_are_kept_as_sent(
    send, in_db, field, kind, text
):
    response, _ = send(field, text)
    assert response.status_code in (200, 201), response.json
    if field.model is None:
        assert response.json["input"] == text
        return
    stored = in_db(
        lambda: db.session.scalars(
            db.select(getattr(field.model, field.column)).where(
                field.model.id == uuid.UUID(response.json["id"])
            )
        ).one()
    )
    assert stored == text


@pytest.mark.parametrize(("kind", "text"), REFUSED, ids=[kind for kind, _ in REFUSED])
def test_a_chat_message_or_system_prompt_follows_the_same_rules(kind, text):
    """Chat calls a model server (tested with a fake one elsewhere): the schema suffices."""
    for body in ({"message": text}, {"message": "Hello", "system": text}):
        with pytest.raises(ValidationError) as refused:
            ChatIn.model_validate(body)
        assert refused.value.errors()[0]["loc"] == (next(reversed(body)),)
    assert ChatIn.model_validate({"message": f"Hello {ACCEPTED[0][1]}"}).message


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_an_optional_text_may_still_be_empty_or_blank(client, text):
    """A description or a note may be empty: blank is trimmed to nothing, not refused."""
    response = client.post("/api/items", json={"name": "Widget", "description": text})
    assert response.status_code == 201
    assert response.json["description"] == ""


# --- the document states the rule ------------------------------------------------------


def _invisible(code: int) -> bool:
    return any(low <= code <= high for low, high in INVISIBLE)


CODE_POINTS = [code for code in range(sys.maxunicode + 1) if not 0xD800 <= code <= 0xDFFF]


@pytest.mark.parametrize("rule", [single_line, multi_line], ids=["single_line", "multi_line"])
def test_the_pattern_accepts_a_character_exactly_when_the_code_does_but_for_marks(rule):
    """Checked as Schemathesis checks it (jsonschema_rs), over every code point: the only
    characters the pattern lets through and the code refuses are combining marks alone,
    which the document's description names (a class of them all would be 300 ranges)."""
    validator = jsonschema_rs.validator_for({"type": "string", "pattern": rule.pattern(1)})
    disagree = []
    for code in CODE_POINTS:
        char = chr(code)
        try:
            rule.check(char)
            taken = True
        except ValueError:
            taken = False
        if validator.is_valid(char) != taken:
            disagree.append(code)
    marks = [
        code
        for code in CODE_POINTS
        if unicodedata.category(chr(code)).startswith("M") and not _invisible(code)
    ]
    assert disagree == marks


def test_the_document_carries_the_rule_on_every_text_field(client):
    spec = client.get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    assert schemas["ItemIn"]["properties"]["name"]["pattern"] == single_line.pattern(1)
    description = schemas["ItemIn"]["properties"]["description"]["anyOf"][0]
    assert description["pattern"] == multi_line.pattern(0)
    assert "combining marks" in description["description"]
    for model, field in [
        ("TodoIn", "task"),
        ("UserIn", "name"),
        ("ApiKeyIn", "name"),
        ("ProcessIn", "input"),
        ("ChatIn", "message"),
    ]:
        prop = schemas[model]["properties"][field]
        assert prop["pattern"] in (single_line.pattern(1), multi_line.pattern(1)), model
        assert "combining marks" in prop["description"], model


def test_a_search_for_nothing_visible_is_400(client):
    assert_problem(client.get("/api/items?q=%E2%80%8B"), 400, "q")
    assert_problem(client.get("/api/items?q=a%E2%80%AEb"), 400, "q")
    assert client.get("/api/items?q=%D7%A9%D7%9C%D7%95%D7%9D").status_code == 200  # Hebrew
