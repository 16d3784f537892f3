"""User rules tested below HTTP: who may sign up under each registration mode, and the
one canonical form emails are compared in."""

from __future__ import annotations

import uuid

import pytest

from backoffice.errors import Forbidden, Unauthorized
from backoffice.extensions import db
from backoffice.users import service
from backoffice.users.models import Role, User, canonical_email


def test_open_registration_lets_anyone_sign_up_as_a_member(app):
    with app.app_context():
        user = service.sign_up("Ada", "ada@example.com", "engine-no-1", "anonymous")
        assert (user.email, user.role) == ("ada@example.com", Role.MEMBER)


def test_the_registration_mode_defaults_to_the_setting(app):
    with app.app_context():
        assert app.config["REGISTRATION"] == "open"
        assert service.sign_up("Ada", "ada@example.com", "engine-no-1", "member")


@pytest.mark.parametrize(("caller", "error"), [("anonymous", Unauthorized), ("member", Forbidden)])
def test_admin_registration_refuses_anyone_but_an_admin_and_stores_nothing(app, caller, error):
    with app.app_context():
        with pytest.raises(error, match="REGISTRATION=admin"):
            service.sign_up("Ada", "ada@example.com", "engine-no-1", caller, registration="admin")
        assert db.session.query(User).count() == 0


def test_admin_registration_lets_an_admin_create_a_member(app):
    with app.app_context():
        user = service.sign_up(
            "Ada", "ada@example.com", "engine-no-1", "admin", registration="admin"
        )
        assert user.role == Role.MEMBER


def test_find_by_email_compares_canonical_forms_and_finds_nobody_unknown(app):
    with app.app_context():
        ada = service.create_user("Ada", "Ada@Example.com", "engine-no-1")
        found = service.find_by_email("ADA@example.COM")
        assert found is not None
        assert found.id == ada.id
        assert service.find_by_email("nobody@example.com") is None


def test_emails_of_answers_each_user_once_and_leaves_out_the_unknown(app):
    with app.app_context():
        ada = service.create_user("Ada", "ada@example.com", "engine-no-1")
        bob = service.create_user("Bob", "bob@example.com", "engine-no-2")
        gone = uuid.UUID(int=1)
        assert service.emails_of([ada.id, bob.id, gone]) == {
            ada.id: "ada@example.com",
            bob.id: "bob@example.com",
        }
        assert service.emails_of([]) == {}


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Ada@example.com", "ada@example.com"),
        ("ΣΑΣ@example.com", "σασ@example.com"),  # noqa: RUF001 (Greek on purpose)
        ("σας@example.com", "σασ@example.com"),  # noqa: RUF001
        ("Jose\u0301@example.com", "jos\u00e9@example.com"),  # NFD in, NFC out
        ("Stra\u00dfe@example.de", "strasse@example.de"),
        ("\u0130stanbul@example.com", "i\u0307stanbul@example.com"),
        ("\uff57x@example.com", "wx@example.com"),  # full-width w
        ("\uff37\uff38@example.com", "wx@example.com"),  # full-width capitals
        ("\ufb01le@example.com", "file@example.com"),  # the ligature fi
        ("a\u00b2@example.com", "a2@example.com"),  # superscript two
    ],
)
def test_emails_are_compared_nfkc_and_case_folded(given, canonical):
    assert canonical_email(given) == canonical
    assert canonical_email(canonical) == canonical  # the form is stable
