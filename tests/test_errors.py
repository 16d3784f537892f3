"""Every status the app can send is an RFC 9457 problem (PRODUCT.md §1, Errors)."""

from __future__ import annotations

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs
from werkzeug.exceptions import TooManyRequests

from backoffice.errors import Conflict
from tests.support import assert_problem


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
