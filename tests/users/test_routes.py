"""Users (PRODUCT.md §2 Auth and users): sign-up, roles, self or admin."""

from __future__ import annotations

import uuid

import pytest

from backoffice.extensions import db
from backoffice.users.models import User
from tests.support import assert_problem, count_rows

NEW = {"name": "Ada Lovelace", "email": "Ada@Example.com", "password": "engine-no-1"}


def user_count() -> int:
    return count_rows(User)


def test_sign_up_creates_a_member_and_hides_the_password(anonymous, in_db):
    response = anonymous.post("/api/users", json=NEW)
    assert response.status_code == 201
    body = response.json
    assert response.headers["Location"] == f"/api/users/{body['id']}"
    assert body["email"] == "Ada@example.com"  # the domain is normalised, the name kept
    assert body["role"] == "member"
    assert body["active"] is True
    assert set(body) == {"id", "name", "email", "role", "active", "created_at", "updated_at"}
    stored = in_db(lambda: db.session.get(User, uuid.UUID(body["id"])))
    assert stored.password_hash.startswith("$argon2id$")


def test_a_duplicate_email_in_any_case_is_409(anonymous, in_db):
    anonymous.post("/api/users", json=NEW)
    again = anonymous.post("/api/users", json={**NEW, "email": "ADA@example.COM"})
    assert_problem(again, 409)
    assert in_db(user_count) == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"name", "email", "password"}),
        ({**NEW, "email": "not-an-email"}, {"email"}),
        ({**NEW, "password": "short"}, {"password"}),
        ({**NEW, "name": "  "}, {"name"}),
        ({**NEW, "role": "admin"}, {"role"}),
    ],
)
def test_invalid_sign_ups_are_422_and_store_nothing(anonymous, in_db, body, fields):
    assert_problem(anonymous.post("/api/users", json=body), 422, *fields)
    assert in_db(user_count) == 0


def test_admin_only_registration(database_url, make_app, admin, member, as_user, in_db):
    """Nobody (or bad credentials) is 401, a member 403, an admin creates the user."""
    closed = make_app(DATABASE_URL=database_url, REGISTRATION="admin")
    anonymous = closed.test_client()
    response = anonymous.post("/api/users", json=NEW)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(
        anonymous.post("/api/users", json=NEW, headers={"Authorization": "Bearer not.a.jwt"}), 401
    )
    assert_problem(anonymous.post("/api/users", json=NEW, headers={"X-API-Key": "bo_x"}), 401)
    member_client = closed.test_client()
    member_client.environ_base.update(as_user(member).environ_base)
    assert_problem(member_client.post("/api/users", json=NEW), 403)
    assert in_db(user_count) == 2  # only the admin and the member
    admin_client = closed.test_client()
    admin_client.environ_base.update(as_user(admin).environ_base)
    assert admin_client.post("/api/users", json=NEW).status_code == 201


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic eDp5"}, {"X-API-Key": "x"}],
)
def test_open_sign_up_with_bad_credentials_is_401_not_anonymous(anonymous, in_db, headers):
    response = anonymous.post("/api/users", json=NEW, headers=headers)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert in_db(user_count) == 0


def test_me_is_the_caller(client, member):
    body = client.get("/api/users/me").json
    assert body["id"] == str(member.id)
    assert body["email"] == member.email


def test_a_member_sees_themselves_but_another_member_is_404(client, member, make_user):
    other = make_user()
    assert client.get(f"/api/users/{member.id}").status_code == 200
    assert_problem(client.get(f"/api/users/{other.id}"), 404)
    assert_problem(client.get(f"/api/users/{uuid.uuid4()}"), 404)


def test_an_admin_lists_users_with_filters_and_pages(as_user, admin, make_user):
    members = [make_user() for _ in range(3)]
    admin_client = as_user(admin)
    everyone = admin_client.get("/api/users?limit=2")
    assert len(everyone.json["data"]) == 2
    assert everyone.headers["Link"].endswith('rel="next"')
    rest = admin_client.get(f"/api/users?limit=2&cursor={everyone.json['next_cursor']}").json
    ids = {user["id"] for user in everyone.json["data"] + rest["data"]}
    assert ids == {str(account.id) for account in [*members, admin]}
    admins = admin_client.get("/api/users?role=admin").json["data"]
    assert [user["id"] for user in admins] == [str(admin.id)]
    admin_client.patch(f"/api/users/{members[0].id}", json={"active": False})
    inactive = admin_client.get("/api/users?active=false").json["data"]
    assert [user["id"] for user in inactive] == [str(members[0].id)]
    assert "password_hash" not in repr(everyone.json)


@pytest.mark.parametrize("query", ["role=owner", "active=maybe", "limit=0"])
def test_bad_user_filters_are_400(as_user, admin, query):
    assert_problem(as_user(admin).get(f"/api/users?{query}"), 400)


def test_a_member_may_not_list_users(client):
    assert_problem(client.get("/api/users"), 403)


def test_a_member_changes_their_own_name_but_not_their_role(client, member, in_db):
    assert (
        client.patch(f"/api/users/{member.id}", json={"name": "New Name"}).json["name"]
        == "New Name"
    )
    assert_problem(client.patch(f"/api/users/{member.id}", json={"role": "admin"}), 403)
    assert_problem(client.patch(f"/api/users/{member.id}", json={"active": False}), 403)
    stored = in_db(lambda: db.session.get(User, member.id))
    assert (stored.role, stored.active) == ("member", True)


def test_an_admin_promotes_and_deactivates(as_user, admin, member, in_db):
    admin_client = as_user(admin)
    response = admin_client.patch(
        f"/api/users/{member.id}", json={"role": "admin", "active": False}
    )
    assert response.status_code == 200
    stored = in_db(lambda: db.session.get(User, member.id))
    assert (stored.role, stored.active, stored.token_generation) == ("admin", False, 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, ""),
        ({"name": None}, "name"),
        ({"email": "x"}, "email"),
        ({"password": "short"}, "password"),
    ],
)
def test_invalid_patches_are_422(client, member, body, field):
    assert_problem(client.patch(f"/api/users/{member.id}", json=body), 422, field)


def test_taking_another_users_email_is_409(client, member, make_user, in_db):
    other = make_user()
    assert_problem(
        client.patch(
            f"/api/users/{member.id}",
            json={"email": other.email.upper(), "current_password": member.password},
        ),
        409,
    )
    assert in_db(lambda: db.session.get(User, member.id).email) == member.email


def test_deleting_yourself_ends_your_tokens(client, member, in_db):
    response = client.delete(f"/api/users/{member.id}")
    assert response.status_code == 204
    assert in_db(lambda: db.session.get(User, member.id)) is None
    assert_problem(client.get("/api/users/me"), 401)


def test_a_member_cannot_delete_another_member(client, make_user, in_db):
    other = make_user()
    assert_problem(client.delete(f"/api/users/{other.id}"), 404)
    assert in_db(lambda: db.session.get(User, other.id)) is not None


def test_changing_your_own_password_takes_the_current_one(anonymous, client, member):
    path = f"/api/users/{member.id}"
    missing = client.patch(path, json={"password": "a brand new secret"})
    assert_problem(missing, 422, "current_password")
    wrong = client.patch(path, json={"password": "a brand new secret", "current_password": "nope"})
    assert_problem(wrong, 422, "current_password")
    right = {"password": "a brand new secret", "current_password": member.password}
    assert client.patch(path, json=right).status_code == 200
    login = {"email": member.email, "password": "a brand new secret"}
    assert anonymous.post("/api/auth/token", json=login).status_code == 200


def test_an_admin_changes_someone_elses_password_without_theirs(anonymous, as_user, admin, member):
    changed = as_user(admin).patch(f"/api/users/{member.id}", json={"password": "set by admin"})
    assert changed.status_code == 200
    login = {"email": member.email, "password": "set by admin"}
    assert anonymous.post("/api/auth/token", json=login).status_code == 200


def test_an_admin_changing_their_own_password_sends_the_current_one(as_user, admin):
    response = as_user(admin).patch(f"/api/users/{admin.id}", json={"password": "a new one!"})
    assert_problem(response, 422, "current_password")


@pytest.mark.parametrize("path", ["/api/users/me", "/api/users/{id}"])
def test_changing_your_own_email_takes_the_current_password(anonymous, client, member, in_db, path):
    """A stolen access token alone cannot move the login email away from its owner."""
    path = path.format(id=member.id)
    new = {"email": "moved@example.com"}
    missing = client.patch(path, json=new)
    assert_problem(missing, 422, "current_password")
    assert "password or email" in missing.json["detail"]
    wrong = client.patch(path, json={**new, "current_password": "not-my-password"})
    assert_problem(wrong, 422, "current_password")
    assert in_db(lambda: db.session.get(User, member.id).email) == member.email
    right = client.patch(path, json={**new, "current_password": member.password})
    assert right.status_code == 200
    assert right.json["email"] == "moved@example.com"
    assert in_db(lambda: db.session.get(User, member.id).email) == "moved@example.com"
    login = {"email": "moved@example.com", "password": member.password}
    assert anonymous.post("/api/auth/token", json=login).status_code == 200


def test_an_admin_changes_someone_elses_email_without_theirs(anonymous, as_user, admin, member):
    changed = as_user(admin).patch(f"/api/users/{member.id}", json={"email": "set@example.com"})
    assert changed.status_code == 200
    login = {"email": "set@example.com", "password": member.password}
    assert anonymous.post("/api/auth/token", json=login).status_code == 200


def test_an_admin_changing_their_own_email_sends_the_current_password(as_user, admin, in_db):
    response = as_user(admin).patch(f"/api/users/{admin.id}", json={"email": "me@example.com"})
    assert_problem(response, 422, "current_password")
    assert in_db(lambda: db.session.get(User, admin.id).email) == admin.email


def test_current_password_without_a_new_one_is_422(client, member):
    response = client.patch(f"/api/users/{member.id}", json={"current_password": member.password})
    assert_problem(response, 422, "current_password")
