"""API keys for machine clients: shown once, stored as hashes, scoped, revocable."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from backoffice.auth.models import ApiKey
from backoffice.extensions import db
from tests.auth.racing import all_at_once
from tests.support import assert_problem, count_rows, eventually


def key_headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def new_key(client, **body) -> dict:
    response = client.post("/api/auth/api-keys", json={"name": "CI robot", **body})
    assert response.status_code == 201, response.json
    return dict(response.json)


def test_a_key_is_shown_once_and_stored_only_as_its_hash(client, member, in_db):
    created = new_key(client)
    assert created["key"].startswith(f"bo_{created['prefix']}_")
    assert created["scopes"] == ["items", "jobs", "orders", "todos", "tools", "users"]
    assert created["last_used_at"] is None
    row = in_db(lambda: db.session.get(ApiKey, uuid.UUID(created["id"])))
    assert row.user_id == member.id
    assert row.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()
    assert created["key"] not in repr(row.__dict__)
    listed = client.get("/api/auth/api-keys").json["data"]
    assert [entry["id"] for entry in listed] == [created["id"]]
    assert "key" not in listed[0]


def test_a_key_authenticates_as_its_owner_and_records_its_use(anonymous, client, member, in_db):
    created = new_key(client)
    response = anonymous.get("/api/users/me", headers=key_headers(created["key"]))
    assert response.status_code == 200
    assert response.json["id"] == str(member.id)
    assert in_db(lambda: db.session.get(ApiKey, uuid.UUID(created["id"])).last_used_at) is not None


def test_a_key_only_reaches_its_scopes(anonymous, client):
    created = new_key(client, scopes=["todos"])
    assert_problem(anonymous.get("/api/items", headers=key_headers(created["key"])), 403)


def test_a_member_cannot_grant_admin_but_an_admin_can(client, as_user, admin):
    assert_problem(client.post("/api/auth/api-keys", json={"name": "x", "scopes": ["admin"]}), 403)
    admin_client = as_user(admin)
    created = admin_client.post("/api/auth/api-keys", json={"name": "ops", "scopes": ["admin"]})
    assert created.status_code == 201
    listed = admin_client.get(
        "/api/users", headers={"Authorization": "", "X-API-Key": created.json["key"]}
    )
    assert listed.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["root"]}, "scopes.0"),
        ({"name": "x", "expires_at": "2020-01-01T00:00:00+00:00"}, "expires_at"),
        ({"name": "x", "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"name": "x", "key": "mine"}, "key"),
    ],
)
def test_invalid_key_requests_are_422_and_create_nothing(client, in_db, body, field):
    assert_problem(client.post("/api/auth/api-keys", json=body), 422, field)
    assert in_db(lambda: db.session.scalars(select(ApiKey)).all()) == []


def test_an_expired_key_is_401(anonymous, client, in_db):
    created = new_key(client, expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    assert anonymous.get("/api/users/me", headers=key_headers(created["key"])).status_code == 200

    def expire() -> None:
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(created["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()

    in_db(expire)  # as another process would: the change reaches this one by notification
    response = eventually(
        lambda: anonymous.get("/api/users/me", headers=key_headers(created["key"])),
        lambda answer: answer.status_code == 401,
        timeout=1,
        interval=0.005,
    )
    assert_problem(response, 401)
    assert "WWW-Authenticate" in response.headers


def test_a_revoked_key_is_401(anonymous, client):
    created = new_key(client)
    assert client.delete(f"/api/auth/api-keys/{created['id']}").status_code == 204
    assert_problem(anonymous.get("/api/users/me", headers=key_headers(created["key"])), 401)
    assert client.get("/api/auth/api-keys").json["data"] == []
    assert_problem(client.delete(f"/api/auth/api-keys/{created['id']}"), 404)


def test_another_users_key_cannot_be_revoked_and_is_404(client, as_user, make_user, anonymous):
    created = new_key(client)
    other = as_user(make_user())
    assert_problem(other.delete(f"/api/auth/api-keys/{created['id']}"), 404)
    assert anonymous.get("/api/users/me", headers=key_headers(created["key"])).status_code == 200


@pytest.mark.parametrize("mangle", ["secret", "prefix", "short", "foreign"])
def test_a_wrong_key_is_401(anonymous, client, mangle):
    key = new_key(client)["key"]
    wrong = {
        "secret": key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB"),
        "prefix": "bo_00000000_" + key[12:],
        "short": "bo_x",
        "foreign": "sk_live_123",
    }[mangle]
    assert_problem(anonymous.get("/api/users/me", headers=key_headers(wrong)), 401)


def test_keys_cannot_manage_keys(anonymous, client):
    key = new_key(client)["key"]
    response = anonymous.get("/api/auth/api-keys", headers=key_headers(key))
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_deactivating_the_owner_ends_their_keys(anonymous, client, member, as_user, admin):
    key = new_key(client)["key"]
    as_user(admin).patch(f"/api/users/{member.id}", json={"active": False})
    assert_problem(anonymous.get("/api/users/me", headers=key_headers(key)), 401)


def test_deleting_the_owner_deletes_their_keys(anonymous, client, member, in_db):
    key = new_key(client)["key"]
    assert client.delete(f"/api/users/{member.id}").status_code == 204
    assert_problem(anonymous.get("/api/users/me", headers=key_headers(key)), 401)
    assert in_db(lambda: db.session.scalars(select(ApiKey)).all()) == []


def test_a_key_never_reaches_a_log_line(anonymous, client):
    with capture_logs(processors=[merge_contextvars]) as logs:
        key = new_key(client)["key"]
        anonymous.get("/api/users/me", headers=key_headers(key))
        anonymous.get("/api/users/me", headers=key_headers(key + "x"))
    assert key not in repr(logs)


def test_reactivating_the_owner_does_not_bring_their_keys_back(
    anonymous, client, member, as_user, admin, in_db
):
    key = new_key(client)["key"]
    admin_client = as_user(admin)
    assert admin_client.patch(f"/api/users/{member.id}", json={"active": False}).status_code == 200
    assert admin_client.patch(f"/api/users/{member.id}", json={"active": True}).status_code == 200
    assert_problem(anonymous.get("/api/users/me", headers=key_headers(key)), 401)
    rows = in_db(lambda: db.session.scalars(select(ApiKey)).all())
    assert [row.revoked_at is not None for row in rows] == [True]
    fresh = as_user(member)  # the member logs in again and lists no live key
    assert fresh.get("/api/auth/api-keys").json["data"] == []


def test_keys_made_while_the_owner_is_deactivated_never_come_back(
    database_url, make_app, member, admin, as_user, in_db
):
    """A deactivation racing key creations (three workers): each key is either refused
    (401) or made before and ended with the others; after reactivation none works."""
    apps = [make_app(DATABASE_URL=database_url) for _ in range(3)]
    member_auth = as_user(member).environ_base
    admin_auth = as_user(admin).environ_base

    def create(n: int):
        http = apps[n % 3].test_client()
        http.environ_base.update(member_auth)
        return http.post("/api/auth/api-keys", json={"name": f"robot {n}"})

    def deactivate():
        http = apps[0].test_client()
        http.environ_base.update(admin_auth)
        return http.patch(f"/api/users/{member.id}", json={"active": False})

    answers = all_at_once([*(lambda n=n: create(n) for n in range(20)), deactivate])
    assert answers[-1].status_code == 200
    assert {answer.status_code for answer in answers[:-1]} <= {201, 401}
    reactivated = as_user(admin).patch(f"/api/users/{member.id}", json={"active": True})
    assert reactivated.status_code == 200
    made = [answer.json["key"] for answer in answers[:-1] if answer.status_code == 201]
    http = apps[1].test_client()
    for key in made:
        assert_problem(http.get("/api/users/me", headers=key_headers(key)), 401)
    live = in_db(
        lambda: db.session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None))).all()
    )
    assert live == []


# --- the list and the bound ----------------------------------------------------------


def test_keys_are_listed_in_keyset_pages_newest_first(client):
    made = [new_key(client, name=f"robot {n}")["id"] for n in range(5)]
    assert client.delete(f"/api/auth/api-keys/{made[2]}").status_code == 204
    seen, path, pages = [], "/api/auth/api-keys?limit=2", 0
    while path:
        page = client.get(path)
        assert page.status_code == 200
        assert set(page.json) == {"data", "next_cursor"}
        seen += [entry["id"] for entry in page.json["data"]]
        pages += 1
        if page.json["next_cursor"] is None:
            assert "Link" not in page.headers
            break
        link = page.headers["Link"]
        assert link.endswith('>; rel="next"')
        assert "limit=2" in link
        assert f"cursor={page.json['next_cursor']}" in link
        path = link[link.index("/api/") : link.index(">")]
    assert seen == [made[4], made[3], made[1], made[0]]  # newest first, the revoked one gone
    assert pages == 2
    default = client.get("/api/auth/api-keys").json
    assert (len(default["data"]), default["next_cursor"]) == (4, None)


@pytest.mark.parametrize(
    "query",
    [
        "limit=-5&foo=bar",
        "foo=bar",
        "limit=0",
        "limit=101",
        "limit=two",
        "cursor=forged.cursor",
        "cursor=",
    ],
)
def test_bad_list_queries_are_400(client, query):
    new_key(client)
    response = client.get(f"/api/auth/api-keys?{query}")
    assert_problem(response, 400)
    assert response.json["errors"]


def test_a_cursor_of_another_list_is_400(as_user, admin, make_user):
    make_user()
    http = as_user(admin)
    users_cursor = http.get("/api/users?limit=1").json["next_cursor"]
    assert users_cursor
    assert_problem(http.get(f"/api/auth/api-keys?cursor={users_cursor}"), 400, "cursor")


def test_the_list_shows_only_your_own_keys(client, as_user, make_user):
    mine = new_key(client)["id"]
    other = as_user(make_user())
    new_key(other)
    assert [entry["id"] for entry in client.get("/api/auth/api-keys").json["data"]] == [mine]


@pytest.fixture
def bounded(make_app, database_url, member, client):
    """The member's client on an app that lets one person hold 3 live keys."""
    http = make_app(DATABASE_URL=database_url, API_KEYS_PER_USER="3").test_client()
    http.environ_base.update(client.environ_base)
    return http


def live_keys(user_id) -> int:
    now = datetime.now(UTC)
    return len(
        [
            key
            for key in db.session.scalars(select(ApiKey).where(ApiKey.user_id == user_id))
            if key.revoked_at is None and (key.expires_at is None or key.expires_at > now)
        ]
    )


def test_past_api_keys_per_user_live_keys_a_new_one_is_409(bounded, member, in_db):
    made = [new_key(bounded, name=f"robot {n}") for n in range(3)]
    refused = bounded.post("/api/auth/api-keys", json={"name": "one too many"})
    assert_problem(refused, 409)
    assert refused.json["limit"] == 3
    assert "API_KEYS_PER_USER=3" in refused.json["detail"]
    assert in_db(lambda: count_rows(ApiKey)) == 3
    # A revoked key does not count: there is room for one more.
    assert bounded.delete(f"/api/auth/api-keys/{made[0]['id']}").status_code == 204
    new_key(bounded, name="after a revocation")
    assert_problem(bounded.post("/api/auth/api-keys", json={"name": "again"}), 409)

    def expire() -> None:
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(made[1]["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()

    in_db(expire)  # nor does an expired one
    new_key(bounded, name="after an expiry")
    assert in_db(lambda: (count_rows(ApiKey), live_keys(member.id))) == (5, 3)


def test_simultaneous_creations_never_exceed_the_bound(
    database_url, make_app, client, member, in_db
):
    """24 creations at once by one person over three workers: exactly 3 get a key."""
    apps = [make_app(DATABASE_URL=database_url, API_KEYS_PER_USER="3") for _ in range(3)]

    def create(n: int):
        http = apps[n % 3].test_client()
        http.environ_base.update(client.environ_base)
        return http.post("/api/auth/api-keys", json={"name": f"robot {n}"})

    answers = all_at_once([lambda n=n: create(n) for n in range(24)])
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {201: 3, 409: 21}, statuses
    assert all(answer.json["limit"] == 3 for answer in answers if answer.status_code == 409)
    assert in_db(lambda: (count_rows(ApiKey), live_keys(member.id))) == (3, 3)
