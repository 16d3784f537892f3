"""The OpenAPI document is the contract: Schemathesis checks every operation against it.

For each operation it generates requests from the document (valid ones, and invalid ones
that must be refused) and sends them to the app in-process, as an admin and as a member,
with every check on: no 5xx, only documented statuses, content types and headers, bodies
that match their schema, schema-valid requests accepted and invalid ones rejected.
No operation is left out: `POST /api/chat` talks to a fake model server
(`bench.fake_llm`). The operations with rules no JSON schema can state are listed in
`DOMAIN_RULES`, each with its rule; only "valid data is accepted" is not checked there.

Bounded for the suite (`FUZZ_EXAMPLES`, default 10 per operation, derandomized so a
failure reproduces); `make fuzz` runs it with many more. SQLite only: this tests the
document against the code, which does not change with the database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import schemathesis
from apiflask import APIFlask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from backoffice.extensions import limiter
from backoffice.pagination import encode_cursor
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
    "/api/items": "items",
    "/api/jobs": "jobs",
    "/api/orders": "orders",
    "/api/todos": "todos",
    "/api/users": "users",
    "/api/chat/usage": "chat-usage",
    "/api/webhooks/events": "webhook-events",
}


#: Rules of the domain no JSON schema can state: a schema-valid request that breaks one is
#: refused (422, or 400 for a webhook), so for these operations "schema-valid data is
#: accepted" (positive_data_acceptance) is not checked; every other check is.
DOMAIN_RULES = {
    "POST /api/orders": "its lines must name items that exist; generated ids name none",
    "POST /api/auth/api-keys": "expires_at must be in the future",
    "PATCH /api/users/me": "your own new password needs your current_password",
    "PATCH /api/users/{user_id}": "the same, and an email domain must be able to receive mail",
    "POST /api/users": "an email domain must be able to receive mail (not .test, .invalid)",
    "POST /api/webhook": "no U+0000 anywhere in the payload, keys included; bounded id and type",
    "POST /api/webhooks/{source}": "the same",
    # JSON Schema counts 1.0 as an integer; the API refuses a float where an integer is
    # meant, as it refuses "1" (numbers are never coerced).
    "POST /api/items": "quantity 1.0 is not an integer",
    "PUT /api/items/{item_id}": "quantity 1.0 is not an integer",
    "PATCH /api/items/{item_id}": "quantity 1.0 is not an integer",
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
        token = login(fuzzed_app.test_client(), make_user(role=role))["access_token"]
        if mode is GenerationMode.POSITIVE and case.query and "cursor" in case.query:
            # A cursor's format is "one the server issued for this list": sign one, as
            # the server does, instead of the random (forged) string generated for it.
            with fuzzed_app.app_context():
                kind = CURSOR_KINDS[case.operation.path]
                case.query["cursor"] = encode_cursor(kind, uuid.uuid4())
        excluded = [positive_data_acceptance] if case.operation.label in DOMAIN_RULES else []
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, excluded_checks=excluded
        )

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
