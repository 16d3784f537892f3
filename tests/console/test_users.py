"""Users in the console (admins): filter, create, change role, deactivate and reactivate
through the users service, whose refusals the page shows; a person whose role or access
changes is signed out of the console at their next request."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from backoffice.extensions import db
from backoffice.users.models import User
from backoffice.users.passwords import verify_password
from tests.support import PASSWORD, count_rows


def _user(in_db, user_id: uuid.UUID) -> tuple[str, bool]:
    def run() -> tuple[str, bool]:
        user = db.session.get(User, user_id)
        return user.role, user.active

    return in_db(run)


def test_a_member_finds_no_users_pages(console_as, member, admin, in_db):
    console = console_as(member)
    for path in ("/console/users", "/console/users/new", f"/console/users/{admin.id}"):
        assert console.get(path).status_code == 404
    assert console.post(f"/console/users/{admin.id}/active", {"active": "false"}).status_code == 404
    assert console.post(f"/console/users/{admin.id}/role", {"role": "member"}).status_code == 404
    assert _user(in_db, admin.id) == ("admin", True)
    assert "/console/users" not in console.get("/console/items").text  # not in the menu


def test_the_list_filters_by_role_and_activity(console_as, admin, make_user):
    ada = make_user(email="ada@example.com")
    make_user(email="bob@example.com")
    console = console_as(admin)
    console.post(f"/console/users/{ada.id}/active", {"active": "false"})
    everyone = console.get("/console/users")
    assert "ada@example.com" in everyone.text
    assert "bob@example.com" in everyone.text
    inactive = console.get("/console/users", query_string={"show": "inactive"})
    assert "ada@example.com" in inactive.text
    assert "bob@example.com" not in inactive.text
    admins = console.get("/console/users", query_string={"role": "admin"})
    assert admin.email in admins.text
    assert "bob@example.com" not in admins.text
    bad = console.get("/console/users", query_string={"role": "owner"})
    assert bad.status_code == 400
    assert "role:" in bad.text


def test_an_admin_creates_a_user_with_a_role(console_as, admin, in_db):
    console = console_as(admin)
    answer = console.post(
        "/console/users",
        {"name": "Grace", "email": "grace@example.com", "password": "long enough", "role": "admin"},
    )
    assert answer.status_code == 303

    def stored() -> tuple[str, str, bool, bool]:
        user = db.session.scalar(select(User).where(User.email == "grace@example.com"))
        return user.name, user.role, user.active, verify_password(user.password_hash, "long enough")

    assert in_db(stored) == ("Grace", "admin", True, True)
    assert "The user was created." in console.get(answer.headers["Location"]).text


def test_a_bad_new_user_is_422_naming_the_fields_and_stores_nothing(console_as, admin, in_db):
    answer = console_as(admin).post(
        "/console/users", {"name": "", "email": "nope", "password": "short", "role": "owner"}
    )
    assert answer.status_code == 422
    for field in ("name", "email", "password", "role"):
        assert f'aria-describedby="e-{field}"' in answer.text
    assert 'value="short"' not in answer.text  # a password is never sent back
    assert in_db(lambda: count_rows(User)) == 1


def test_a_taken_email_is_409_and_stores_nothing(console_as, admin, member, in_db):
    answer = console_as(admin).post(
        "/console/users",
        {"name": "Twin", "email": member.email.upper(), "password": PASSWORD, "role": "member"},
    )
    assert answer.status_code == 409
    assert "already exists" in answer.text
    assert in_db(lambda: count_rows(User)) == 2


def test_the_last_active_admin_cannot_be_demoted_or_deactivated(console_as, admin, in_db):
    console = console_as(admin)
    demoted = console.post(f"/console/users/{admin.id}/role", {"role": "member"})
    assert demoted.status_code == 409
    assert "This would leave no active admin" in demoted.text
    deactivated = console.post(f"/console/users/{admin.id}/active", {"active": "false"})
    assert deactivated.status_code == 409
    assert "This would leave no active admin" in deactivated.text
    assert _user(in_db, admin.id) == ("admin", True)
    assert console.get("/console/users").status_code == 200  # still signed in


def test_a_bad_role_is_422_and_changes_nothing(console_as, admin, member, in_db):
    answer = console_as(admin).post(f"/console/users/{member.id}/role", {"role": "owner"})
    assert answer.status_code == 422
    assert 'aria-describedby="e-role"' in answer.text
    assert _user(in_db, member.id) == ("member", True)


def test_deactivating_a_signed_in_user_ends_their_console_session(console_as, admin, member, in_db):
    theirs = console_as(member)
    assert theirs.get("/console/todos").status_code == 200
    boss = console_as(admin)
    answer = boss.post(f"/console/users/{member.id}/active", {"active": "false"})
    assert answer.status_code == 303
    assert _user(in_db, member.id) == ("member", False)
    assert "their sessions and API keys ended" in boss.get(answer.headers["Location"]).text
    refused = theirs.get("/console/todos")
    assert refused.status_code == 303
    assert refused.headers["Location"].startswith("/console/sign-in")
    again = boss.post(f"/console/users/{member.id}/active", {"active": "true"})
    assert again.status_code == 303
    assert _user(in_db, member.id) == ("member", True)
    assert theirs.get("/console/todos").status_code == 303  # the ended session stays ended


def test_a_role_change_ends_the_persons_console_session(console_as, admin, member, in_db):
    theirs = console_as(member)
    boss = console_as(admin)
    answer = boss.post(f"/console/users/{member.id}/role", {"role": "admin"})
    assert answer.status_code == 303
    assert _user(in_db, member.id) == ("admin", True)
    refused = theirs.post("/console/todos", {"task": "After the change"})
    assert refused.status_code == 303
    assert refused.headers["Location"].startswith("/console/sign-in")
    assert theirs.get("/console/users").status_code == 303
