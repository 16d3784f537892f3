"""Tokens: log in, refresh, log out (PRODUCT.md §2 Auth and users)."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import select
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from backoffice.auth.models import RevokedToken
from backoffice.extensions import db
from backoffice.users.models import User
from tests.auth import tokens
from tests.auth.racing import all_at_once
from tests.support import PASSWORD, assert_problem, count_rows, login


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_an_access_and_a_refresh_token(anonymous, member):
    response = anonymous.post("/api/auth/token", json={"email": member.email, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    claims = tokens.claims_of(body["access_token"])
    assert claims["sub"] == str(member.id)
    assert claims["role"] == "member"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["jti"]
    assert claims["type"] == "access"
    assert tokens.claims_of(body["refresh_token"])["type"] == "refresh"


def test_email_is_matched_case_insensitively(anonymous, member):
    response = anonymous.post(
        "/api/auth/token", json={"email": member.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200


def test_login_accepts_the_oauth2_password_form(anonymous, member):
    response = anonymous.post(
        "/api/auth/token",
        # What the docs page's Authorize button (Swagger UI's password flow) sends.
        data={
            "grant_type": "password",
            "username": member.email,
            "password": PASSWORD,
            "scope": "items todos",
            "client_id": "",
        },
    )
    assert response.status_code == 200
    assert response.json["token_type"] == "bearer"


def test_login_without_fields_is_422_naming_them(anonymous):
    assert_problem(anonymous.post("/api/auth/token", json={}), 422, "email", "password")


def test_login_with_another_content_type_is_415(anonymous):
    response = anonymous.post("/api/auth/token", data="x", content_type="text/plain")
    assert_problem(response, 415)


def test_wrong_password_and_unknown_email_answer_the_same(anonymous, member):
    wrong = anonymous.post("/api/auth/token", json={"email": member.email, "password": "nope-nope"})
    unknown = anonymous.post(
        "/api/auth/token", json={"email": "nobody@example.com", "password": "nope-nope"}
    )
    for response in (wrong, unknown):
        assert_problem(response, 401)
    assert wrong.json["detail"] == unknown.json["detail"]
    # A 401 says how to authenticate (RFC 9110 §15.5.2), the same way for both.
    same = {name: value for name, value in wrong.headers if name != "X-Request-ID"}
    assert same == {name: value for name, value in unknown.headers if name != "X-Request-ID"}
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="Authentication Required"'


def test_a_deactivated_user_cannot_log_in(anonymous, member, as_user, admin):
    as_user(admin).patch(f"/api/users/{member.id}", json={"active": False})
    response = anonymous.post("/api/auth/token", json={"email": member.email, "password": PASSWORD})
    assert_problem(response, 401)


def test_passwords_are_stored_as_argon2id_and_rehashed_when_parameters_change(
    app, anonymous, member, in_db
):
    stored = in_db(lambda: db.session.get(User, member.id).password_hash)
    assert stored.startswith("$argon2id$")
    assert "t=1" in stored
    app.config["PASSWORD_HASH_TIME_COST"] = 2
    try:
        login(anonymous, member)
    finally:
        app.config["PASSWORD_HASH_TIME_COST"] = 1
    rehashed = in_db(lambda: db.session.get(User, member.id).password_hash)
    assert rehashed.startswith("$argon2id$")
    assert "t=2" in rehashed


def test_refresh_issues_new_tokens_and_spends_the_refresh_token(anonymous, member):
    first = login(anonymous, member)
    response = anonymous.post("/api/auth/refresh", headers=bearer(first["refresh_token"]))
    assert response.status_code == 200
    assert response.json["access_token"] != first["access_token"]
    assert (
        anonymous.get("/api/users/me", headers=bearer(response.json["access_token"])).status_code
        == 200
    )
    again = anonymous.post("/api/auth/refresh", headers=bearer(first["refresh_token"]))
    assert_problem(again, 401)


def test_an_access_token_is_not_a_refresh_token_and_vice_versa(anonymous, member):
    pair = login(anonymous, member)
    assert_problem(anonymous.post("/api/auth/refresh", headers=bearer(pair["access_token"])), 401)
    assert_problem(anonymous.get("/api/users/me", headers=bearer(pair["refresh_token"])), 401)


def refresh(client, refresh_token: str):
    return client.post("/api/auth/refresh", headers=bearer(refresh_token))


def me(client, access_token: str):
    return client.get("/api/users/me", headers=bearer(access_token))


def test_logout_revokes_the_token_everywhere(anonymous, member):
    pair = login(anonymous, member)
    response = anonymous.post("/api/auth/logout", headers=bearer(pair["access_token"]))
    assert response.status_code == 204
    assert response.data == b""
    for path in ("/api/users/me", "/api/items"):
        revoked = anonymous.get(path, headers=bearer(pair["access_token"]))
        assert_problem(revoked, 401)
        assert revoked.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(refresh(anonymous, pair["refresh_token"]), 401)


def test_logout_ends_the_whole_session_and_only_that_one(anonymous, member):
    """No body needed: the refresh token of that login, and every pair it was refreshed
    into, end with it. The same person's other logins go on."""
    first = login(anonymous, member)
    refreshed = refresh(anonymous, first["refresh_token"]).json
    other = login(anonymous, member)
    response = anonymous.post("/api/auth/logout", headers=bearer(first["access_token"]))
    assert response.status_code == 204
    assert_problem(me(anonymous, refreshed["access_token"]), 401)
    assert_problem(refresh(anonymous, refreshed["refresh_token"]), 401)
    assert me(anonymous, other["access_token"]).status_code == 200
    assert refresh(anonymous, other["refresh_token"]).status_code == 200


def test_reusing_a_spent_refresh_token_revokes_its_whole_family(anonymous, member):
    """Two parties hold the token (a thief and the client): both lose the session."""
    first = login(anonymous, member)
    other = login(anonymous, member)
    second = refresh(anonymous, first["refresh_token"]).json
    reused = refresh(anonymous, first["refresh_token"])
    assert_problem(reused, 401)
    assert "already used" in reused.json["detail"]
    assert reused.headers["WWW-Authenticate"].startswith("Bearer")
    for token in (second["access_token"], first["access_token"]):
        assert_problem(me(anonymous, token), 401)
    assert_problem(refresh(anonymous, second["refresh_token"]), 401)
    assert me(anonymous, other["access_token"]).status_code == 200


def test_tokens_carry_the_family_of_their_login(anonymous, member):
    first = login(anonymous, member)
    second = refresh(anonymous, first["refresh_token"]).json
    families = {
        tokens.claims_of(token)["fam"]
        for token in (*first.values(), *second.values())
        if isinstance(token, str) and token.count(".") == 2
    }
    assert len(families) == 1
    assert tokens.claims_of(login(anonymous, member)["access_token"])["fam"] not in families


def test_concurrent_refreshes_with_one_token_get_one_pair_and_end_the_session(
    database_url, make_app, make_user
):
    """A refresh token is spent once, whatever the concurrency: of ten simultaneous uses
    across three app instances (three workers), one wins; the other nine are reuse, which
    revokes the family, so the winner's new tokens die too."""
    apps = [make_app(DATABASE_URL=database_url) for _ in range(3)]
    account = make_user()
    for round_no in range(3):
        pair = login(apps[0].test_client(), account)
        clients = [apps[n % 3].test_client() for n in range(10)]
        token = pair["refresh_token"]
        answers = all_at_once([lambda c=c, t=token: refresh(c, t) for c in clients])
        statuses = Counter(answer.status_code for answer in answers)
        assert statuses == {200: 1, 401: 9}, (round_no, statuses)
        winner = next(answer.json for answer in answers if answer.status_code == 200)
        for client in clients[:3]:
            assert_problem(me(client, winner["access_token"]), 401)
            assert_problem(refresh(client, winner["refresh_token"]), 401)


def test_a_deactivation_ends_tokens_for_good(anonymous, member, as_user, admin):
    pair = login(anonymous, member)
    admin_client = as_user(admin)
    admin_client.patch(f"/api/users/{member.id}", json={"active": False})
    admin_client.patch(f"/api/users/{member.id}", json={"active": True})
    assert_problem(me(anonymous, pair["access_token"]), 401)
    assert_problem(refresh(anonymous, pair["refresh_token"]), 401)
    assert login(anonymous, member)["access_token"]


def test_a_revocation_holds_in_every_worker(make_app, database_url, anonymous, member):
    """Two app instances on one database stand for two server processes."""
    other_worker = make_app(DATABASE_URL=database_url).test_client()
    pair = login(anonymous, member)
    assert (
        other_worker.get("/api/users/me", headers=bearer(pair["access_token"])).status_code == 200
    )
    anonymous.post("/api/auth/logout", headers=bearer(pair["access_token"]))
    assert_problem(other_worker.get("/api/users/me", headers=bearer(pair["access_token"])), 401)


@pytest.mark.parametrize("kind", ["expired", "tampered", "unsigned", "other_secret", "garbage"])
def test_bad_tokens_are_401_with_www_authenticate(app, anonymous, member, kind):
    good = login(anonymous, member)["access_token"]
    token = {
        "expired": lambda: tokens.expired(app, member.id),
        "tampered": lambda: tokens.tampered(good),
        "unsigned": lambda: tokens.unsigned(good),
        "other_secret": lambda: tokens.other_secret(app, member.id),
        "garbage": lambda: "not.a.jwt",
    }[kind]()
    response = anonymous.get("/api/users/me", headers=bearer(token))
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="Authentication Required"'


def test_a_password_change_ends_every_session(anonymous, member):
    old = login(anonymous, member)
    response = anonymous.patch(
        f"/api/users/{member.id}",
        headers=bearer(old["access_token"]),
        json={"password": "a brand new secret", "current_password": PASSWORD},
    )
    assert response.status_code == 200
    assert_problem(anonymous.get("/api/users/me", headers=bearer(old["access_token"])), 401)
    assert_problem(anonymous.post("/api/auth/refresh", headers=bearer(old["refresh_token"])), 401)
    fresh = anonymous.post(
        "/api/auth/token", json={"email": member.email, "password": "a brand new secret"}
    )
    assert fresh.status_code == 200


def test_no_log_line_and_no_answer_carries_a_password_or_token(anonymous, make_user):
    with capture_logs(processors=[merge_contextvars]) as logs:
        created = anonymous.post(
            "/api/users",
            json={
                "name": "Log Watch",
                "email": "watch@example.com",
                "password": "s3cret-pass-word",
            },
        )
        token = anonymous.post(
            "/api/auth/token", json={"email": "watch@example.com", "password": "s3cret-pass-word"}
        )
        anonymous.post(
            "/api/auth/token", json={"email": "watch@example.com", "password": "wrong-pass-word"}
        )
    assert created.status_code == 201
    assert token.status_code == 200
    assert "s3cret" not in created.get_data(as_text=True)
    assert "password" not in created.json
    logged = repr(logs)
    for secret in ("s3cret-pass-word", "wrong-pass-word", token.json["access_token"]):
        assert secret not in logged


def test_revocations_are_shared_through_the_database(database_url, make_app, make_user, in_db):
    """Two apps stand for two workers. The revocation is a row, forgotten (by retention)
    once every token the session could still hold has expired."""
    worker_a, worker_b = (make_app(DATABASE_URL=database_url).test_client() for _ in range(2))
    pair = login(worker_a, make_user())
    worker_a.post("/api/auth/logout", headers=bearer(pair["access_token"]))
    assert_problem(worker_b.get("/api/users/me", headers=bearer(pair["access_token"])), 401)
    assert_problem(refresh(worker_b, pair["refresh_token"]), 401)
    family = f"family:{tokens.claims_of(pair['access_token'])['fam']}"
    row = in_db(lambda: db.session.get(RevokedToken, family))
    lifetime = (row.expires_at - datetime.now(UTC)).total_seconds()
    assert 14 * 86400 <= lifetime <= 14 * 86400 + 61


@pytest.mark.parametrize("store", ["redis"] if os.environ.get("TEST_REDIS_URL") else [])
def test_ended_sessions_stay_ended_when_redis_loses_its_data(
    request, database_url, make_app, make_user, in_db, store
):
    """Everything the service can keep in Redis is there (login and chat limits); Redis then
    loses it all, as a restart without persistence, a crash between snapshots or an
    eviction would. A logged-out session stays ended and a spent refresh token stays spent:
    revocations live in the database, which keeps them."""
    redis_url = request.getfixturevalue("redis_url")
    app = make_app(DATABASE_URL=database_url, RATELIMIT_STORAGE_URI=redis_url)
    client = app.test_client()
    account = make_user()
    wrong = client.post("/api/auth/token", json={"email": account.email, "password": "nope-nope"})
    assert_problem(wrong, 401)  # counted, in Redis
    logged_out = login(client, account)
    assert (
        client.post("/api/auth/logout", headers=bearer(logged_out["access_token"])).status_code
        == 204
    )
    spent = login(client, account)
    assert refresh(client, spent["refresh_token"]).status_code == 200

    with redis.Redis.from_url(redis_url) as server:
        assert server.dbsize() > 0
        server.flushdb()  # this test worker's own database, never FLUSHALL
        assert server.dbsize() == 0

    assert_problem(me(client, logged_out["access_token"]), 401)
    assert_problem(refresh(client, logged_out["refresh_token"]), 401)
    reused = refresh(client, spent["refresh_token"])
    assert_problem(reused, 401)
    assert "already used" in reused.json["detail"]
    assert "access_token" not in reused.json
    families = [tokens.claims_of(pair["access_token"])["fam"] for pair in (logged_out, spent)]
    revoked = in_db(lambda: set(db.session.scalars(select(RevokedToken.jti))))
    # The logged-out family, the spent refresh token, and (its reuse) the spent one's
    # family: nothing was minted from the spent token, and its session is over.
    assert revoked == {
        f"family:{families[0]}",
        tokens.claims_of(spent["refresh_token"])["jti"],
        f"family:{families[1]}",
    }


@pytest.mark.parametrize("store", ["redis"] if os.environ.get("TEST_REDIS_URL") else [])
def test_the_revocations_an_earlier_version_kept_in_redis_are_carried_over(
    request, app, database_url, make_app, member, in_db, store
):
    """Upgrading from a version that kept revocations in Redis (`REDIS_URL`) must not bring
    the sessions it ended back: `flask auth import-revocations` copies them, with their
    expiry, and running it again changes nothing."""
    redis_url = request.getfixturevalue("redis_url")
    checker = make_app(DATABASE_URL=database_url, AUTH_CACHE="false").test_client()
    ended = login(checker, member)
    family = f"family:{tokens.claims_of(ended['access_token'])['fam']}"
    kept = datetime(2030, 1, 1, tzinfo=UTC)
    with app.app_context():
        db.session.add(RevokedToken(jti="revoked-in-both", expires_at=kept))
        db.session.commit()
    with redis.Redis.from_url(redis_url) as server:  # as the earlier version wrote them
        server.flushdb()  # this test worker's own database
        server.set(f"backoffice:revoked:{family}", 1, ex=3600)
        server.set("backoffice:revoked:spent-refresh-jti", 1, ex=600)
        server.set("backoffice:revoked:revoked-in-both", 1, ex=600)
        server.set("ratelimit:something-else", 1)
    assert me(checker, ended["access_token"]).status_code == 200  # the database knew nothing

    runner = app.test_cli_runner()
    first = runner.invoke(args=["auth", "import-revocations", redis_url])
    assert first.exit_code == 0, first.output
    assert first.output == "Redis held 3 revocations; 2 were new to the database.\n"
    assert_problem(me(checker, ended["access_token"]), 401)
    assert_problem(refresh(checker, ended["refresh_token"]), 401)
    rows = in_db(lambda: {r.jti: r.expires_at for r in db.session.scalars(select(RevokedToken))})
    assert set(rows) == {family, "spent-refresh-jti", "revoked-in-both"}
    assert 3590 <= (rows[family] - datetime.now(UTC)).total_seconds() <= 3600
    assert rows["revoked-in-both"] == kept  # left as it was
    again = runner.invoke(args=["auth", "import-revocations", redis_url])
    assert again.output == "Redis held 3 revocations; 0 were new to the database.\n"


def test_importing_revocations_from_a_redis_that_does_not_answer_fails_and_changes_nothing(
    app, in_db
):
    answer = app.test_cli_runner().invoke(
        args=["auth", "import-revocations", "redis://:hunter2@127.0.0.1:1/0"]
    )
    assert answer.exit_code == 1
    assert answer.output == "Error: Redis did not answer (ConnectionError).\n"
    assert in_db(lambda: count_rows(RevokedToken)) == 0
