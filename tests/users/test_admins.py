"""There is always an active admin: the last one cannot demote, deactivate or delete
themselves (409), not even when several admins step down at the same moment."""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.users.models import Role, User
from tests.auth.racing import all_at_once
from tests.support import assert_problem

STEP_DOWN = [{"role": "member"}, {"active": False}]


def active_admins() -> int:
    return db.session.scalar(
        select(func.count()).where(User.role == Role.ADMIN, User.active.is_(True))
    )


@pytest.mark.parametrize("change", STEP_DOWN, ids=["demote", "deactivate"])
def test_the_last_active_admin_cannot_step_down(as_user, admin, in_db, change):
    response = as_user(admin).patch(f"/api/users/{admin.id}", json=change)
    problem = assert_problem(response, 409)
    assert "no active admin" in problem["detail"]
    stored = in_db(lambda: db.session.get(User, admin.id))
    assert (stored.role, stored.active, stored.token_generation) == ("admin", True, 0)


def test_the_last_active_admin_cannot_delete_themselves(as_user, admin, in_db):
    assert_problem(as_user(admin).delete(f"/api/users/{admin.id}"), 409)
    assert in_db(lambda: db.session.get(User, admin.id)) is not None


def test_an_inactive_admin_does_not_count(as_user, admin, make_user):
    dormant = make_user(role="admin")
    admin_client = as_user(admin)
    assert admin_client.patch(f"/api/users/{dormant.id}", json={"active": False}).status_code == 200
    assert_problem(admin_client.patch(f"/api/users/{admin.id}", json={"role": "member"}), 409)


@pytest.mark.parametrize("change", STEP_DOWN, ids=["demote", "deactivate"])
def test_an_admin_steps_down_while_another_remains(as_user, admin, make_user, in_db, change):
    make_user(role="admin")
    assert as_user(admin).patch(f"/api/users/{admin.id}", json=change).status_code == 200
    assert in_db(active_admins) == 1


def test_admins_stepping_down_at_once_leave_exactly_one(database_url, make_app, make_user, in_db):
    """Six admins over three workers demote, deactivate or delete themselves at the same
    moment: five succeed, one is refused, one active admin remains. Three rounds."""
    apps = [make_app(DATABASE_URL=database_url) for _ in range(3)]
    for round_no in range(3):
        admins = [make_user(role="admin") for _ in range(6)]
        clients = []
        for n, account in enumerate(admins):
            http = apps[n % 3].test_client()
            token = http.post(
                "/api/auth/token", json={"email": account.email, "password": account.password}
            ).json["access_token"]
            http.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            clients.append(http)

        answers = all_at_once(
            [
                partial(step_down, http, account, n)
                for n, (http, account) in enumerate(zip(clients, admins, strict=True))
            ]
        )
        statuses = Counter(answer.status_code for answer in answers)
        assert statuses[409] == 1, (round_no, statuses)
        assert statuses[200] + statuses[204] == 5, (round_no, statuses)
        assert in_db(active_admins) == 1
        # Make way for the next round: the survivor steps down once a new admin exists.
        survivor = next(admins[n] for n, answer in enumerate(answers) if answer.status_code == 409)
        in_db(lambda s=survivor: _demote(s.id))


def step_down(http, account, n: int):
    """Admin `n` leaves the admins: by demotion, deactivation or deletion, in turn."""
    path = f"/api/users/{account.id}"
    if n % 3 == 2:
        return http.delete(path)
    return http.patch(path, json=STEP_DOWN[n % 2])


def _demote(user_id) -> None:
    db.session.get(User, user_id).role = Role.MEMBER
    db.session.commit()
