"""The OpenAPI document is the contract: Schemathesis checks every operation against it.

For each operation it generates requests from the document (valid ones, and invalid ones
that must be refused) and sends them to the app in-process, as an admin and as a member,
with every check on: no 5xx, only documented statuses, content types and headers, bodies
that match their schema, schema-valid requests accepted and invalid ones rejected.
No operation is left out: `POST /api/chat` talks to a fake model server
(`bench.fake_llm`). A few rules no JSON schema can state (an order names items that
exist) are described in the document and met by the generated request before it is sent,
as `DOMAIN_RULES` says; every check runs on every operation.

Bounded for the suite (`FUZZ_EXAMPLES`, default 10 per operation, derandomized so a
failure reproduces); `make fuzz` runs it with many more. SQLite only: this tests the
document against the code, which does not change with the database.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from apiflask import APIFlask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation

from backoffice.database import utcnow
from backoffice.extensions import limiter
from backoffice.items import service as items
from backoffice.orders.schemas import MAX_UNITS
from backoffice.pagination import encode_cursor
from backoffice.schemas import multi_line
from backoffice.visible_text import has_visible
from bench.fake_llm import serving
from tests.support import Account, login

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
BOUNDED = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


#: The list each paginated path pages through (its cursors are signed for that list).
CURSOR_KINDS = {
    "/api/auth/api-keys": "api-keys",
    "/api/items": "items",
    "/api/jobs": "jobs",
    "/api/orders": "orders",
    "/api/todos": "todos",
    "/api/users": "users",
    "/api/chat/usage": "chat-usage",
    "/api/webhooks/events": "webhook-events",
}


def _existing_items(case: schemathesis.Case, caller: Account) -> None:
    """`item_id` is "an item that exists" (with the stock the line asks for): each line
    gets an item of its own, created as an admin would."""
    for line in case.body["lines"]:
        line["item_id"] = str(items.create_item("Fuzzed", quantity=MAX_UNITS).id)


def _future_expiry(case: schemathesis.Case, caller: Account) -> None:
    """`expires_at` is "a moment in the future"."""
    if isinstance(case.body, dict) and case.body.get("expires_at") is not None:
        case.body["expires_at"] = (utcnow() + timedelta(days=1)).isoformat()


def _current_password(case: schemathesis.Case, caller: Account) -> None:
    """`current_password` is "your password" when you change your password or email."""
    if isinstance(case.body, dict) and {"password", "email"} & case.body.keys():
        case.body["current_password"] = caller.password


#: The text rule's pattern, as the document states it (multi-line: the wider of the two).
TEXT_PATTERN = re.compile(multi_line.pattern(1))


def _visible_text(case: schemathesis.Case) -> None:
    """Text is "at least one visible character", and a combining mark alone is not one: the
    document's `pattern` states every other part of the rule and its `description` this
    one (a class of every mark would be some 300 ranges). A generated string that meets the
    pattern but shows only marks (beside invisible characters) gets a visible first
    character, as a person would type one; its length stays. Only such strings are
    touched (in another field, a password made only of marks, say, it stays valid)."""
    for container in (case.body, case.query):
        for holder, key, text in _strings(container):
            if TEXT_PATTERN.search(text) and not has_visible(text):
                holder[key] = "x" + text[:-1]


def _strings(value: object) -> Iterator[tuple[Any, Any, str]]:
    """Every string in a JSON value, as (its container, its key or index, the string)."""
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            pairs = list(current.items())
        elif isinstance(current, list):
            pairs = list(enumerate(current))
        else:
            continue
        for key, item in pairs:
            if isinstance(item, str):
                yield current, key, item
            else:
                pending.append(item)


#: Rules of the domain that no JSON schema can state, each described in the document
#: beside its field: a valid request meets them, so the generated one is made to (as a
#: client would), and then every check runs on it, "valid data is accepted" included.
DOMAIN_RULES: dict[str, Callable[[schemathesis.Case, Account], None]] = {
    "POST /api/orders": _existing_items,
    "POST /api/auth/api-keys": _future_expiry,
    "PATCH /api/users/me": _current_password,
}


@pytest.fixture
def fuzzed_app(database_url: str, make_app: Callable[..., APIFlask]) -> Iterator[APIFlask]:
    """The app on the test database, with its chat gateway talking to a fake model server,
    so `POST /api/chat` is exercised for real rather than answering 503 throughout."""
    with serving() as model_server:
        app = make_app(
            DATABASE_URL=database_url, LLM_BASE_URL=model_server.url, LLM_MODEL="fake-model"
        )
        yield app
        app.extensions["chat_gateway"].close()


def fuzz(
    operation: APIOperation, mode: GenerationMode, send: Callable[[schemathesis.Case], None]
) -> None:
    @BOUNDED
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        send(case)

    run()


# The document does not depend on the database: fuzzed on SQLite only (not generated for
# PostgreSQL at all, rather than skipped there).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("role", ["admin", "member"])
def test_every_operation_keeps_to_the_document(
    fuzzed_app: APIFlask,
    app: APIFlask,
    role: str,
    mode: GenerationMode,
    make_user: Callable[..., Account],
) -> None:
    api_schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)

    def send(case: schemathesis.Case) -> None:
        # A fresh caller per request: a generated request may log its caller out, change
        # its password or delete it, and the next one must not inherit that.
        with fuzzed_app.app_context():
            limiter.reset()  # generated failed logins must not lock this caller's login out
        caller = make_user(role=role)
        token = login(fuzzed_app.test_client(), caller)["access_token"]
        meet_rule = DOMAIN_RULES.get(case.operation.label)
        if mode is GenerationMode.POSITIVE:
            _visible_text(case)
        if mode is GenerationMode.POSITIVE and meet_rule:
            with fuzzed_app.app_context():
                meet_rule(case, caller)
        if mode is GenerationMode.POSITIVE and case.query and "cursor" in case.query:
            # A cursor's format is "one the server issued for this list": sign one, as
            # the server does, instead of the random (forged) string generated for it.
            with fuzzed_app.app_context():
                kind = CURSOR_KINDS[case.operation.path]
                case.query["cursor"] = encode_cursor(kind, uuid.uuid4())
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})

    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        try:
            fuzz(operation, mode, send)
        except Unsatisfiable:
            # No input can break the document: nothing to send in negative mode.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as error:  # every operation's, not the first
            failures.append(f"{operation.label}: {error}")
    assert not failures, "\n\n".join(failures)
