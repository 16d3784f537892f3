"""`X-Forwarded-*` headers are trusted only as PROXY_FIX_X_* says (none by default), and a
forwarded host is still one of TRUSTED_HOSTS. The same through a real Nginx:
tests/test_nginx.py."""

from __future__ import annotations

import pytest

from backoffice.config import ConfigError, load_settings
from tests.support import assert_problem

FORWARDED = {"X-Forwarded-Host": "localhost", "X-Forwarded-Port": "8080"}
BEHIND_ONE_PROXY = {f"PROXY_FIX_X_{name}": "1" for name in ("FOR", "PROTO", "HOST", "PORT")}


@pytest.fixture
def proxied(make_app, database_url, as_user, member):
    """A member's client of an app that trusts one proxy, as compose configures it."""

    def client(**overrides: str):
        app = make_app(DATABASE_URL=database_url, **overrides)
        made = app.test_client()
        made.environ_base.update(as_user(member).environ_base)
        for n in range(2):
            assert made.post("/api/items", json={"name": f"Forwarded {n}"}).status_code == 201
        return made

    return client


def test_forwarded_headers_are_ignored_by_default(proxied):
    client = proxied()
    listed = client.get("/api/items?limit=1", headers={**FORWARDED, "X-Forwarded-Proto": "https"})
    assert listed.headers["Link"].startswith("<http://localhost/api/items?limit=1&cursor=")
    spec = client.get("/openapi.json", headers=FORWARDED).json
    assert spec["servers"] == [{"url": "http://localhost"}]


def test_links_and_servers_follow_a_trusted_proxy(proxied):
    client = proxied(**BEHIND_ONE_PROXY)
    headers = {**FORWARDED, "X-Forwarded-Proto": "https"}
    listed = client.get("/api/items?limit=1", headers=headers)
    assert listed.headers["Link"].startswith("<https://localhost:8080/api/items?limit=1&cursor=")
    spec = client.get("/openapi.json", headers=headers).json
    assert spec["servers"] == [{"url": "https://localhost:8080"}]
    # Another request, another address: the document is not pinned to the first one.
    assert client.get("/openapi.json").json["servers"] == [{"url": "http://localhost"}]


def test_a_forwarded_host_outside_trusted_hosts_is_400(proxied):
    client = proxied(**BEHIND_ONE_PROXY)
    response = client.get("/api/items?limit=1", headers={"X-Forwarded-Host": "evil.example"})
    assert_problem(response, 400)
    assert "Link" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_only_as_many_hops_as_configured_are_trusted(proxied):
    client = proxied(**BEHIND_ONE_PROXY)
    # The client's own value first, then the one our proxy appended: only the last counts.
    headers = {"X-Forwarded-Host": "evil.example, localhost", "X-Forwarded-Port": "1, 8080"}
    listed = client.get("/api/items?limit=1", headers=headers)
    assert listed.headers["Link"].startswith("<http://localhost:8080/api/items?")


@pytest.mark.parametrize("variable", sorted(BEHIND_ONE_PROXY))
def test_a_negative_count_of_proxies_is_refused_at_start(variable):
    with pytest.raises(ConfigError, match=f"{variable} must be a number of proxies"):
        load_settings({variable: "-1"})


@pytest.mark.parametrize("scheme", ["javascript", "data", "HTTPS ", "ftp", ""])
def test_a_forwarded_scheme_other_than_http_or_https_is_ignored(proxied, scheme):
    client = proxied(**BEHIND_ONE_PROXY)
    listed = client.get("/api/items?limit=1", headers={"X-Forwarded-Proto": scheme})
    assert listed.status_code == 200
    assert listed.headers["Link"].startswith("<http://localhost/api/items?limit=1&cursor=")
    assert client.get("/openapi.json", headers={"X-Forwarded-Proto": scheme}).json["servers"] == [
        {"url": "http://localhost"}
    ]
