"""User rules tested below HTTP: who may sign up under each registration mode."""

from __future__ import annotations

import pytest

from backoffice.errors import Forbidden
from backoffice.extensions import db
from backoffice.users import service
from backoffice.users.models import Role, User


def test_open_registration_lets_anyone_sign_up_as_a_member(app):
    with app.app_context():
        user = service.sign_up("Ada", "ada@example.com", "engine-no-1", caller_is_admin=False)
        assert (user.email, user.role) == ("ada@example.com", Role.MEMBER)


def test_the_registration_mode_defaults_to_the_setting(app):
    with app.app_context():
        assert app.config["REGISTRATION"] == "open"
        assert service.sign_up("Ada", "ada@example.com", "engine-no-1", caller_is_admin=False)


def test_admin_registration_refuses_anyone_but_an_admin_and_stores_nothing(app):
    with app.app_context():
        with pytest.raises(Forbidden, match="REGISTRATION=admin"):
            service.sign_up(
                "Ada", "ada@example.com", "engine-no-1", caller_is_admin=False, registration="admin"
            )
        assert db.session.query(User).count() == 0


def test_admin_registration_lets_an_admin_create_a_member(app):
    with app.app_context():
        user = service.sign_up(
            "Ada", "ada@example.com", "engine-no-1", caller_is_admin=True, registration="admin"
        )
        assert user.role == Role.MEMBER
