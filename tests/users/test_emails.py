"""One canonical email (NFKC, case-folded), used by sign-up, the unique index and login,
on SQLite and PostgreSQL alike (whose `lower()` disagreed with Python's)."""

from __future__ import annotations

import unicodedata
import uuid
from collections import Counter

import pytest

from backoffice.extensions import db
from backoffice.users.models import User
from tests.auth.racing import all_at_once
from tests.support import assert_problem, count_rows

#: Greek capital sigma, alpha, sigma.
SIGMA = "\u03a3\u0391\u03a3@example.com"
#: What Python's lower() makes of it: the last sigma becomes a final sigma.
FINAL_SIGMA = "\u03c3\u03b1\u03c2@example.com"
#: What PostgreSQL's lower() makes of it: plain small sigmas.
PLAIN_SIGMA = "\u03c3\u03b1\u03c3@example.com"
NFC = unicodedata.normalize("NFC", "Jos\u00e9.Garc\u00eda@example.com")
NFD = unicodedata.normalize("NFD", NFC)
#: A full-width w (U+FF57): it looks like the plain one, and NFKC makes it one.
FULL_WIDTH = "\uff57x@example.com"
PASSWORD = "engine-no-1"

#: (signed up as, logged in as): every pair is the same account.
SAME_ACCOUNT = [
    (SIGMA, SIGMA),
    (SIGMA, FINAL_SIGMA),
    (SIGMA, PLAIN_SIGMA),
    (FINAL_SIGMA, SIGMA),
    (NFD, NFD),
    (NFD, NFC),
    (NFC, NFD.upper()),
    ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),
    ("ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM"),
    ("wx@example.com", FULL_WIDTH),
    (FULL_WIDTH, "wx@example.com"),
    (FULL_WIDTH, "WX@example.com"),
    ("\ufb01le@example.com", "file@example.com"),  # the ligature fi
]


def sign_up(client, email: str):
    return client.post("/api/users", json={"name": "Someone", "email": email, "password": PASSWORD})


def log_in(client, email: str):
    return client.post("/api/auth/token", json={"email": email, "password": PASSWORD})


@pytest.mark.parametrize(("signed_up", "logged_in"), SAME_ACCOUNT)
def test_an_email_logs_in_in_any_case_and_normal_form(anonymous, signed_up, logged_in):
    created = sign_up(anonymous, signed_up)
    assert created.status_code == 201, created.json
    answer = log_in(anonymous, logged_in)
    assert answer.status_code == 200, answer.json


@pytest.mark.parametrize(("signed_up", "again"), SAME_ACCOUNT)
def test_the_same_email_in_another_form_is_409(anonymous, in_db, signed_up, again):
    assert sign_up(anonymous, signed_up).status_code == 201
    assert_problem(sign_up(anonymous, again), 409)
    assert in_db(lambda: count_rows(User)) == 1


def test_the_address_is_kept_as_given_and_compared_canonically(anonymous, in_db):
    body = sign_up(anonymous, NFD).json
    assert body["email"] == NFC  # composed, as the validator returns it; case kept
    stored = in_db(lambda: db.session.get(User, uuid.UUID(body["id"])))
    assert stored.email == NFC
    assert stored.email_canonical == NFC.casefold()


def test_a_full_width_address_is_kept_as_given_and_logs_in_in_either_form(anonymous, in_db):
    body = sign_up(anonymous, FULL_WIDTH).json
    assert body["email"] == FULL_WIDTH
    stored = in_db(lambda: db.session.get(User, uuid.UUID(body["id"])))
    assert (stored.email, stored.email_canonical) == (FULL_WIDTH, "wx@example.com")
    for typed in (FULL_WIDTH, "wx@example.com"):
        answer = log_in(anonymous, typed)
        assert answer.status_code == 200, (typed, answer.json)


def test_taking_another_users_email_in_another_form_is_409(anonymous, as_user, make_user, in_db):
    sign_up(anonymous, SIGMA)
    other = make_user()
    change = {"email": FINAL_SIGMA, "current_password": other.password}
    response = as_user(other).patch(f"/api/users/{other.id}", json=change)
    assert_problem(response, 409)
    assert in_db(lambda: db.session.get(User, other.id).email) == other.email


def test_a_changed_email_logs_in_in_any_form(anonymous, as_user, member):
    change = {"email": NFD, "current_password": member.password}
    response = as_user(member).patch(f"/api/users/{member.id}", json=change)
    assert response.status_code == 200
    answer = anonymous.post(
        "/api/auth/token", json={"email": NFC.upper(), "password": member.password}
    )
    assert answer.status_code == 200


def test_concurrent_sign_ups_in_every_form_create_one_user(database_url, make_app, in_db):
    """The unique index on the canonical column decides, whatever the concurrency."""
    apps = [
        make_app(DATABASE_URL=database_url, SIGNUP_RATE_LIMIT="1000 per hour") for _ in range(3)
    ]
    forms = [SIGMA, FINAL_SIGMA, PLAIN_SIGMA, SIGMA.lower(), PLAIN_SIGMA.upper()] * 4
    answers = all_at_once(
        [lambda n=n, e=e: sign_up(apps[n % 3].test_client(), e) for n, e in enumerate(forms)]
    )
    assert Counter(answer.status_code for answer in answers) == {201: 1, 409: 19}
    assert in_db(lambda: count_rows(User)) == 1
