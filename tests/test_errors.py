"""Every status the app can send is an RFC 9457 problem (PRODUCT.md §1, Errors)."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
import redis
from flask import request
from limits.errors import StorageError
from sqlalchemy import insert, text
from structlog.contextvars import merge_contextvars
from structlog.processors import format_exc_info
from structlog.testing import capture_logs
from werkzeug.exceptions import TooManyRequests

from backoffice.errors import Conflict
from backoffice.extensions import db
from backoffice.webhooks.models import WebhookEvent
from tests.support import PROBLEM, assert_problem


@pytest.fixture
def faulty_app(tmp_path, make_app):
    """An app with routes that fail on purpose: a bug, a rate limit, a domain conflict."""
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'faulty.db'}")

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/limited")
    def limited():
        raise TooManyRequests(retry_after=30)

    @app.get("/conflict")
    def conflict():
        raise Conflict("not enough stock", available=3)

    return app


def test_unknown_route_is_404_problem(client):
    assert_problem(client.get("/api/nothing-here"), 404)


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/api/items")
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_missing_trailing_slash_redirect_is_not_turned_into_a_problem(client):
    assert client.get("/docs/").status_code in {200, 308, 404}


def test_unexpected_exception_is_500_without_internals_and_logged_with_request_id(faulty_app):
    client = faulty_app.test_client()
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = client.get("/boom", headers={"X-Request-ID": "trace-me-123"})
    body = assert_problem(response, 500)
    assert "hunter2" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["request_id"] == "trace-me-123"
    [error] = [line for line in logs if line["event"] == "unhandled_exception"]
    assert error["log_level"] == "error"
    assert error["exc_info"] is True
    assert error["exc_type"] == "RuntimeError"
    assert error["request_id"] == "trace-me-123"


def test_429_keeps_retry_after(faulty_app):
    response = faulty_app.test_client().get("/limited")
    assert_problem(response, 429)
    assert response.headers["Retry-After"] == "30"


def test_api_errors_carry_their_extension_members(faulty_app):
    body = assert_problem(faulty_app.test_client().get("/conflict"), 409)
    assert body["detail"] == "not enough stock"
    assert body["available"] == 3
    assert body["type"] == "/problems/conflict"


def test_incoming_sane_request_id_is_kept_and_echoed(client):
    response = client.get("/health", headers={"X-Request-ID": "abc-123.def:9"})
    assert response.headers["X-Request-ID"] == "abc-123.def:9"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "semi;colon", "new\\nline"])
def test_unsafe_request_id_is_replaced(client, bad):
    response = client.get("/health", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"] != bad
    assert len(response.headers["X-Request-ID"]) == 32


def test_one_log_line_per_request_with_method_path_status_duration_and_id(client):
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = client.post("/api/items", json={"name": "Logged"})
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["method"] == "POST"
    assert line["path"] == "/api/items"
    assert line["status"] == 201
    assert line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["X-Request-ID"]


def test_every_problem_type_has_one_title(client, anonymous, as_user, admin, faulty_app, make_app):
    """Collect problems from many error paths (schemas, services, Werkzeug, the auth layer,
    dependencies) and check that each type always comes with the same title."""
    item = client.post("/api/items", json={"name": "Titled"}).json
    past = "2000-01-01T00:00:00+00:00"
    faulty = faulty_app.test_client()
    down = make_app(DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none").test_client()
    responses = [
        client.get("/api/nothing-here"),
        client.get(f"/api/items/{uuid.uuid4()}"),
        client.get("/api/items/not-a-uuid"),
        client.get("/api/items?limit=0"),
        client.get("/api/items?cursor=forged"),
        client.get("/api/items", headers={"Host": "evil.example"}),
        client.delete("/api/items"),
        client.post("/api/items", data="x", content_type="text/plain"),
        client.post("/api/items", data="{", content_type="application/json"),
        client.post("/api/items"),
        client.post("/api/items", json={"name": ""}),
        client.post("/api/items", json={"name": "x\u0000"}),
        client.patch(f"/api/items/{item['id']}", json={}),
        client.put(
            f"/api/items/{item['id']}",
            json={"name": "Stale", "description": None, "quantity": 1},
            headers={"If-Match": '"0-0"'},
        ),
        client.post("/api/auth/api-keys", json={"name": "old", "expires_at": past}),
        client.post("/api/jobs", json={"type": "no-such-job"}),
        client.post("/api/items", json={"name": "k"}, headers={"Idempotency-Key": "has space"}),
        anonymous.get("/api/items"),
        anonymous.post("/api/webhooks/unknown-source", json={"type": "x"}),
        client.get("/api/users"),
        as_user(admin).get("/api/webhooks/events?status=nope"),
        faulty.get("/boom"),
        faulty.get("/limited"),
        faulty.get("/conflict"),
        down.get(
            "/api/items", headers={"Authorization": client.environ_base["HTTP_AUTHORIZATION"]}
        ),
    ]
    titles: dict[str, set[str]] = defaultdict(set)
    for response in responses:
        assert response.mimetype == PROBLEM, (response.request.path, response.status_code)
        titles[response.json["type"]].add(response.json["title"])
    assert {kind: found for kind, found in titles.items() if len(found) > 1} == {}
    assert titles["/problems/validation-failed"] == {"Validation failed"}
    assert titles["/problems/not-found"] == {"Not Found"}
    assert len(titles) >= 12


#: Request data that must stay out of the log (kept out of the routes' source lines too,
#: which a logged traceback shows).
NOT_A_NUMBER = "hunter2-secret"


@pytest.fixture
def database_faults(make_app, database_url):
    """An app on the test database with routes that break the database's rules."""
    app = make_app(DATABASE_URL=database_url)
    row = {"source": "leak", "delivery_id": "secret-delivery-id@example.com", "status": "received"}

    @app.post("/duplicate")
    def duplicate():
        for _ in range(2):
            payload = {"card": "4111-1111-1111-1111", "email": "secret-payer@example.com"}
            db.session.execute(insert(WebhookEvent).values(id=uuid.uuid4(), payload=payload, **row))
        return {}

    @app.post("/not-a-number")
    def not_a_number():
        db.session.execute(text("SELECT CAST(:value AS INTEGER) + 0"), {"value": NOT_A_NUMBER})
        db.session.execute(text("SELECT * FROM no_such_table"))
        return {}

    return app.test_client()


def rendered(logs) -> str:
    return "\n".join(str(line) for line in logs)


@pytest.mark.parametrize("path", ["/duplicate", "/not-a-number"])
def test_a_database_error_never_logs_the_values_it_was_given(database_faults, path):
    """No bound parameter (`hide_parameters`), and none of the values PostgreSQL quotes in
    its own message (`Key (...)=(...)`, `invalid input syntax: "..."`), reach the log."""
    with capture_logs(processors=[merge_contextvars, format_exc_info]) as logs:
        response = database_faults.post(path, headers={"X-Request-ID": "db-fault-1"})
    assert_problem(response, 500)
    [error] = [line for line in logs if line["event"] == "unhandled_exception"]
    assert error["request_id"] == "db-fault-1"
    assert "Traceback" in error["exception"]
    assert "Error" in error["exc_type"]
    text_logged = rendered(logs)
    for secret in ("secret-delivery-id", "secret-payer", "4111", NOT_A_NUMBER, "parameters:"):
        assert secret not in text_logged


def test_a_dependency_failing_after_the_view_is_still_503(make_app, database_url):
    """Bookkeeping after the view (the limiter's, say) meeting a Redis that just went down:
    503 with Retry-After, not the 500 Flask makes of errors raised then."""
    app = make_app(DATABASE_URL=database_url)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: testing re-raises these

    @app.get("/late-outage")
    def late_outage():
        return {}

    def limiter_bookkeeping(response):
        if request.path == "/late-outage":
            raise StorageError(redis.exceptions.ConnectionError("Connection refused"))
        return response

    # Runs last, as the limiter's own (bound before the request log) does.
    app.after_request_funcs.setdefault(None, []).insert(0, limiter_bookkeeping)
    response = app.test_client().get("/late-outage")
    body = assert_problem(response, 503)
    assert body["type"] == "/problems/dependency-unavailable"
    assert response.headers["Retry-After"] == "5"
