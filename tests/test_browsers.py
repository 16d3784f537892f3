"""What browsers are told: CORS for the allowed origins only, and security headers on
every answer (`backoffice.browsers`)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from backoffice.config import ConfigError, load_settings
from tests.support import assert_problem

APP_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://evil.example.net"
API_CSP = "default-src 'none'; frame-ancestors 'none'"


@pytest.fixture
def cors_client(make_app, database_url, as_user, member):
    """A member's client of an app that lets APP_ORIGIN (and a local dev origin) call it."""
    app = make_app(DATABASE_URL=database_url, CORS_ORIGINS=f"{APP_ORIGIN}, http://localhost:3000")
    client = app.test_client()
    client.environ_base.update(as_user(member).environ_base)
    return client


def preflight(client, path, origin, method="POST", headers="authorization, content-type"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def granted(response):
    return {name for name, _ in response.headers.items() if name.startswith("Access-Control-")}


# --- OPTIONS and preflights -----------------------------------------------------------


def test_options_without_cors_is_204_with_allow_and_no_body(client):
    response = client.options("/api/items")
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert response.data == b""
    assert "Content-Type" not in response.headers


def test_no_origin_is_allowed_by_default(client):
    response = preflight(client, "/api/items", APP_ORIGIN)
    assert response.status_code == 204
    assert granted(response) == set()
    assert not granted(client.get("/api/items", headers={"Origin": APP_ORIGIN}))


def test_a_preflight_from_an_allowed_origin_is_granted(cors_client):
    asked = "authorization, content-type, idempotency-key, if-match, x-request-id"
    response = preflight(cors_client, "/api/items", APP_ORIGIN, "PATCH", asked)
    assert response.status_code == 204
    assert response.data == b""
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert set(headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"
    }  # fmt: skip
    assert set(headers["Access-Control-Allow-Headers"].split(", ")) == set(asked.split(", "))
    assert headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in headers
    assert "Origin" in response.vary


def test_a_preflight_names_only_the_headers_the_api_takes(cors_client):
    response = preflight(cors_client, "/api/items", APP_ORIGIN, "POST", "x-api-key, x-evil")
    assert response.headers["Access-Control-Allow-Headers"] == "x-api-key"


def test_a_preflight_from_another_origin_is_granted_nothing(cors_client):
    response = preflight(cors_client, "/api/items", OTHER_ORIGIN)
    assert response.status_code == 204
    assert granted(response) == set()
    assert "Origin" in response.vary


def test_an_allowed_origin_reads_answers_and_their_headers(cors_client):
    created = cors_client.post(
        "/api/items", json={"name": "Shared"}, headers={"Origin": "http://LOCALHOST:3000"}
    )
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == "http://LOCALHOST:3000"
    exposed = set(created.headers["Access-Control-Expose-Headers"].split(", "))
    assert exposed == {
        "ETag", "Location", "Link", "Retry-After", "Idempotent-Replayed", "X-Request-ID"
    }  # fmt: skip
    assert "Origin" in created.vary


def test_errors_carry_the_grant_too(cors_client):
    missing = cors_client.get("/api/nothing-here", headers={"Origin": APP_ORIGIN})
    assert_problem(missing, 404)
    assert missing.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    refused = cors_client.get(
        "/api/items", headers={"Origin": APP_ORIGIN, "Authorization": "Bearer nope"}
    )
    assert_problem(refused, 401)
    assert refused.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_another_origin_gets_the_answer_but_no_grant(cors_client):
    response = cors_client.get("/api/items", headers={"Origin": OTHER_ORIGIN})
    assert response.status_code == 200
    assert granted(response) == set()
    assert "Origin" in response.vary


def test_any_origin_without_credentials(make_app, database_url):
    client = make_app(DATABASE_URL=database_url, CORS_ORIGINS="*").test_client()
    response = preflight(client, "/api/items", OTHER_ORIGIN)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_credentials_are_granted_only_when_configured(make_app, database_url):
    app = make_app(DATABASE_URL=database_url, CORS_ORIGINS=APP_ORIGIN, CORS_ALLOW_CREDENTIALS="1")
    response = preflight(app.test_client(), "/api/items", APP_ORIGIN)
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_any_origin_with_credentials_is_refused_at_start():
    with pytest.raises(ConfigError, match="CORS_ORIGINS=\\* cannot go with CORS_ALLOW_CREDENTIALS"):
        load_settings({"CORS_ORIGINS": "*", "CORS_ALLOW_CREDENTIALS": "true"})


@pytest.mark.parametrize(
    "origins", ["https://app.example.com/", "app.example.com", "https://a.example.com/path", "*,x"]
)
def test_an_origin_that_never_matches_is_refused_at_start(origins):
    with pytest.raises(ConfigError, match="CORS_ORIGINS lists"):
        load_settings({"CORS_ORIGINS": origins})


# --- security headers ---------------------------------------------------------------


def assert_security_headers(response, csp=API_CSP):
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == csp
    assert "Strict-Transport-Security" not in response.headers


def test_every_answer_carries_the_security_headers(anonymous):
    assert_security_headers(anonymous.get("/health"))
    assert_security_headers(anonymous.get("/openapi.json"))
    assert_security_headers(anonymous.options("/api/items"))
    missing = anonymous.get("/no-such-page")
    assert_problem(missing, 404)
    assert_security_headers(missing)
    assert_security_headers(anonymous.get("/api/items"))  # 401
    assert_security_headers(anonymous.post("/api/items", data="x"))  # 415


def test_authenticated_answers_are_not_stored(client, anonymous):
    created = client.post("/api/items", json={"name": "Private"})
    assert created.headers["Cache-Control"] == "no-store"
    assert client.get(created.headers["Location"]).headers["Cache-Control"] == "no-store"
    refused = anonymous.get("/api/items", headers={"X-API-Key": "bo_not-a-key"})
    assert_problem(refused, 401)
    assert refused.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in anonymous.get("/health").headers


def test_token_answers_are_not_stored(anonymous, member):
    response = anonymous.post(
        "/api/auth/token", json={"email": member.email, "password": member.password}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    refreshed = anonymous.post(
        "/api/auth/refresh",
        headers={"Authorization": f"Bearer {response.json['refresh_token']}"},
    )
    assert refreshed.status_code == 200
    assert refreshed.headers["Cache-Control"] == "no-store"


def test_the_docs_page_may_run_exactly_its_inline_script_and_style(anonymous):
    """The policy a real Chromium loads /docs under without a violation (docs/api/browsers.md:
    checked by hand; the page logs in and tries requests)."""
    response = anonymous.get("/docs")
    assert response.status_code == 200
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    html = response.get_data(as_text=True)
    for tag, source in (("script", "script-src"), ("style", "style-src")):
        inline = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        assert inline
        hashes = {
            "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
            for body in inline
        }
        assert set(policy[source].split()) == {"'self'", *hashes}
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_is_sent_over_https_when_configured(make_app, database_url):
    client = make_app(DATABASE_URL=database_url, HSTS_MAX_AGE="31536000").test_client()
    assert (
        client.get("/health", base_url="https://localhost").headers["Strict-Transport-Security"]
        == "max-age=31536000"
    )
    assert "Strict-Transport-Security" not in client.get("/health").headers


def test_hsts_follows_the_scheme_a_trusted_proxy_forwards(make_app, database_url):
    client = make_app(
        DATABASE_URL=database_url, HSTS_MAX_AGE="600", PROXY_FIX_X_PROTO="1"
    ).test_client()
    forwarded = client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert forwarded.headers["Strict-Transport-Security"] == "max-age=600"
    untrusted = make_app(DATABASE_URL=database_url, HSTS_MAX_AGE="600").test_client()
    plain = untrusted.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in plain.headers


def test_a_server_error_carries_the_security_headers(make_app, database_url):
    app = make_app(DATABASE_URL=database_url, CORS_ORIGINS=APP_ORIGIN)

    def broken() -> str:
        raise RuntimeError("a bug")

    app.add_url_rule("/broken", view_func=broken)
    response = app.test_client().get("/broken", headers={"Origin": APP_ORIGIN})
    assert_problem(response, 500)
    assert_security_headers(response)
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
