"""`/`, `/health`, `{prefix}/health`, `/openapi.json` and `/docs` (PRODUCT.md §2, Service)."""

from __future__ import annotations

import re


def test_root_describes_the_service(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.json == {
        "status": "online",
        "message": "Server is ready!",
        "docs": "/docs",
        "version": "0.1.0",
    }


def test_liveness_is_healthy(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "healthy"}


#: Every dependency a request may need, named in every readiness answer.
EVERY_CHECK = {"database", "queue", "revocation_store", "rate_limit_store"}


def test_readiness_checks_every_dependency(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok"
    assert body["checks"] == dict.fromkeys(EVERY_CHECK, "ok")
    assert body["version"] == "0.1.0"
    assert body["timestamp"].endswith("+00:00")


def test_readiness_is_503_degraded_when_the_database_is_down(make_app):
    # A real PostgreSQL URL on a port nothing listens on: the check fails for real.
    app = make_app(DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none")
    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["status"] == "degraded"
    # Revoked tokens and rate-limit counts (RATELIMIT_STORAGE_URI's default) live in the
    # database too: those stores are down with it.
    assert response.json["checks"] == {
        "database": "unavailable",
        "queue": "ok",
        "revocation_store": "unavailable",
        "rate_limit_store": "unavailable",
    }
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_readiness_is_503_degraded_when_the_broker_is_down(make_app, database_url):
    app = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    assert response.json["status"] == "degraded"
    assert response.headers["Retry-After"] == "5"
    assert response.json["checks"] == {
        "database": "ok",
        "queue": "unavailable",
        "revocation_store": "ok",
        "rate_limit_store": "ok",
    }


def test_openapi_document_is_3_1_and_describes_items(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"].startswith("3.1")
    assert {"/api/items", "/api/items/{item_id}", "/api/health", "/health", "/"} <= set(
        spec["paths"]
    )
    create = spec["paths"]["/api/items"]["post"]
    assert "201" in create["responses"]
    assert "application/problem+json" in create["responses"]["415"]["content"]
    body_schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["$ref"].endswith("/ItemIn")
    assert spec["components"]["schemas"]["ItemIn"]["additionalProperties"] is False


def test_openapi_document_describes_who_may_call_what(client):
    spec = client.get("/openapi.json").json
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["BearerAuth"]["description"],
    }
    assert schemes["ApiKeyAuth"]["in"] == "header"
    assert schemes["ApiKeyAuth"]["name"] == "X-API-Key"
    items = spec["paths"]["/api/items"]["get"]
    assert items["security"] == [
        {"BearerAuth": ["items"]},
        {"ApiKeyAuth": ["items"]},
        {"OAuth2PasswordFlow": ["items"]},
    ]
    flow = schemes["OAuth2PasswordFlow"]["flows"]["password"]
    assert flow["tokenUrl"] == "/api/auth/token"
    assert set(flow["scopes"]) == {"items", "orders", "jobs", "todos", "tools", "users", "admin"}
    assert {"401", "403"} <= set(items["responses"])
    users = spec["paths"]["/api/users"]["get"]
    assert {"ApiKeyAuth": ["admin"]} in users["security"]
    keys = spec["paths"]["/api/auth/api-keys"]["get"]
    assert keys["security"] == [{"BearerAuth": []}, {"OAuth2PasswordFlow": []}]
    assert "security" not in spec["paths"]["/api/auth/token"]["post"]


def test_docs_page_uses_only_assets_the_app_serves(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    external = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
    assert external == []
    assets = re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', html)
    assert len(assets) >= 3
    for asset in assets:
        with client.get(asset) as served:
            assert served.status_code == 200, asset
            assert len(served.data) > 0


def test_api_prefix_is_a_setting(tmp_path, make_app):
    app = make_app(API_PREFIX="/v1", DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}")
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert "/v1/items" in rules
    assert "/api/items" not in rules
    assert "/health" in rules
