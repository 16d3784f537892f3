"""Who may call what: every endpoint by every kind of caller, from one table.

Callers: anonymous, the member who owns the resources, another member, an admin, the
owner's API key (all member scopes), and four bad bearer tokens (revoked by logout,
expired, tampered, `alg: none`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest

from tests.auth import tokens
from tests.support import assert_problem, login

CALLERS = [
    "anonymous",
    "owner",
    "other_member",
    "admin",
    "api_key",
    "revoked_token",
    "expired_token",
    "tampered_token",
    "unsigned_token",
]
BAD = {
    "anonymous": 401,
    "revoked_token": 401,
    "expired_token": 401,
    "tampered_token": 401,
    "unsigned_token": 401,
}


def everyone(status: int) -> dict[str, int]:
    return {**BAD, "owner": status, "other_member": status, "admin": status, "api_key": status}


def owner_or_admin(status: int) -> dict[str, int]:
    return {**everyone(status), "other_member": 404}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expected: dict[str, int]
    body: dict | None = None


CASES = [
    Case("GET", "/api/items", everyone(200)),
    Case("POST", "/api/items", everyone(201), {"name": "Matrix"}),
    Case("GET", "/api/items/{item}", everyone(200)),
    Case(
        "PUT", "/api/items/{item}", everyone(200), {"name": "X", "description": None, "quantity": 1}
    ),
    Case("PATCH", "/api/items/{item}", everyone(200), {"quantity": 2}),
    Case("DELETE", "/api/items/{item}", everyone(204)),
    Case("POST", "/api/orders", everyone(201), {"lines": [{"item_id": "{item}", "quantity": 1}]}),
    Case("GET", "/api/orders", everyone(200)),
    Case("GET", "/api/orders/{order}", owner_or_admin(200)),
    Case("POST", "/api/orders/{order}/cancel", owner_or_admin(200)),
    # Only admins fulfil, and only a paid order: this one is pending.
    Case("POST", "/api/orders/{order}/fulfil", {**everyone(403), "admin": 409}),
    Case("GET", "/api/users", {**everyone(403), "admin": 200}),
    Case("GET", "/api/users/me", everyone(200)),
    Case("GET", "/api/users/{owner}", owner_or_admin(200)),
    Case("PATCH", "/api/users/{owner}", owner_or_admin(200), {"name": "Renamed"}),
    Case("PATCH", "/api/users/{owner}", {**owner_or_admin(403), "admin": 200}, {"role": "admin"}),
    Case("DELETE", "/api/users/{owner}", owner_or_admin(204)),
    Case("GET", "/api/auth/api-keys", {**everyone(200), "api_key": 401}),
    Case("POST", "/api/auth/api-keys", {**everyone(201), "api_key": 401}, {"name": "k"}),
    Case("POST", "/api/auth/logout", {**everyone(204), "api_key": 401}, {}),
    Case("GET", "/api/todos", everyone(200)),
    Case("POST", "/api/todos", everyone(201), {"task": "Matrix"}),
    # Todos are personal: not even an admin sees another person's.
    Case("GET", "/api/todos/{todo}", {**owner_or_admin(200), "admin": 404}),
    Case("PATCH", "/api/todos/{todo}", {**owner_or_admin(200), "admin": 404}, {"done": True}),
    Case("DELETE", "/api/todos/{todo}", {**owner_or_admin(204), "admin": 404}),
    Case("GET", "/api/jobs", everyone(200)),
    Case("POST", "/api/jobs", everyone(202), {"type": "text-analysis", "input": {"text": "x"}}),
    Case("GET", "/api/jobs/{job}", owner_or_admin(200)),
    Case("DELETE", "/api/jobs/{job}", owner_or_admin(204)),
    Case("GET", "/api/webhooks/events", {**everyone(403), "admin": 200}),
    Case("GET", "/api/webhooks/events/{missing}", {**everyone(403), "admin": 404}),
    Case("GET", "/api/health", dict.fromkeys(CALLERS, 200)),
    Case("POST", "/api/process", everyone(200), {"input": "matrix"}),
    Case("GET", "/api/divide?a=10&b=2", everyone(200)),
    # This app has no model server configured: the caller is let through, then told so.
    Case("POST", "/api/chat", everyone(503), {"message": "matrix"}),
    Case("GET", "/api/chat/usage", everyone(200)),
]


@pytest.fixture
def callers(app, anonymous, make_user, client, member) -> dict[str, dict[str, str]]:
    """The headers each kind of caller sends; `client` is the owner's session."""
    other, admin = make_user(), make_user(role="admin")

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    revoked = login(anonymous, member)["access_token"]
    anonymous.post("/api/auth/logout", headers=bearer(revoked), json={})
    good = login(anonymous, member)["access_token"]
    key = client.post("/api/auth/api-keys", json={"name": "matrix"}).json["key"]
    return {
        "anonymous": {},
        "owner": bearer(good),
        "other_member": bearer(login(anonymous, other)["access_token"]),
        "admin": bearer(login(anonymous, admin)["access_token"]),
        "api_key": {"X-API-Key": key},
        "revoked_token": bearer(revoked),
        "expired_token": bearer(tokens.expired(app, member.id)),
        "tampered_token": bearer(tokens.tampered(good)),
        "unsigned_token": bearer(tokens.unsigned(good)),
    }


@pytest.fixture
def job(unread_app, client) -> str:
    """A queued job of the owner's, on a broker no worker reads (so it stays cancellable)."""
    owner = unread_app.test_client()
    owner.environ_base.update(client.environ_base)
    return str(owner.post("/api/jobs", json={"type": "inventory-report"}).json["id"])


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    "case", CASES, ids=lambda case: f"{case.method} {case.path} {case.body or ''}"
)
def test_authorization(anonymous, client, member, callers, job, case, caller):
    item = client.post("/api/items", json={"name": "Target"}).json["id"]
    todo = client.post("/api/todos", json={"task": "Target"}).json["id"]
    stocked = client.post("/api/items", json={"name": "Stocked", "quantity": 10}).json["id"]
    lines = [{"item_id": stocked, "quantity": 1}]
    order = client.post("/api/orders", json={"lines": lines}).json["id"]
    path = case.path.format(
        item=item, todo=todo, job=job, order=order, owner=member.id, missing=uuid.uuid4()
    )
    body = json.loads(json.dumps(case.body).replace("{item}", stocked)) if case.body else case.body
    response = anonymous.open(path, method=case.method, json=body, headers=callers[caller])
    expected = case.expected[caller]
    if expected >= 400:
        assert_problem(response, expected)
        if expected == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    else:
        assert response.status_code == expected, response.json
