"""A verified token's claims are kept until it expires, and never its state: ending a token
ends it on the next request, cached or not."""

from __future__ import annotations

import pytest

from backoffice.auth.service import VerifiedTokens
from tests.auth import tokens
from tests.support import assert_problem, login

CLAIMS = {"sub": "u", "type": "access", "exp": 1_000.0, "jti": "j"}


def test_claims_are_kept_until_the_token_expires_and_not_a_moment_longer():
    verified = VerifiedTokens(size=8)
    verified.put("token", CLAIMS)
    assert verified.get("token", now=999.0) == CLAIMS
    assert verified.get("token", now=1_000.0) is None
    assert verified.get("token", now=999.0) is None  # an expired entry is gone for good


def test_the_cache_is_bounded_least_recently_used_first():
    verified = VerifiedTokens(size=2)
    verified.put("a", CLAIMS)
    verified.put("b", CLAIMS)
    assert verified.get("a", now=0) is not None  # a is now the most recently used
    verified.put("c", CLAIMS)
    assert verified.get("b", now=0) is None
    assert verified.get("a", now=0) is not None
    assert verified.get("c", now=0) is not None


def test_a_caller_cannot_change_what_the_next_request_reads():
    verified = VerifiedTokens(size=2)
    verified.put("token", CLAIMS)
    verified.get("token", now=0)["sub"] = "admin"  # type: ignore[index]
    assert verified.get("token", now=0)["sub"] == "u"  # type: ignore[index]


def cached(app) -> VerifiedTokens:
    return app.extensions["verified_tokens"]


def test_a_logged_out_token_is_refused_though_its_claims_are_cached(app, anonymous, member):
    token = login(anonymous, member)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/api/users/me", headers=headers).status_code == 200
    assert cached(app).get(token, now=0) is not None
    assert anonymous.post("/api/auth/logout", headers=headers).status_code == 204
    assert_problem(anonymous.get("/api/users/me", headers=headers), 401)


@pytest.mark.parametrize("kind", ["tampered", "unsigned", "other_secret"])
def test_a_bad_token_is_never_cached(app, anonymous, member, kind):
    good = login(anonymous, member)["access_token"]
    bad = {
        "tampered": lambda: tokens.tampered(good),
        "unsigned": lambda: tokens.unsigned(good),
        "other_secret": lambda: tokens.other_secret(app, member.id),
    }[kind]()
    for _ in range(2):
        assert_problem(
            anonymous.get("/api/users/me", headers={"Authorization": f"Bearer {bad}"}), 401
        )
    assert cached(app).get(bad, now=0) is None


def test_an_expired_token_is_refused_even_after_it_was_cached(app, anonymous, member):
    """Its entry says when it expires: past that, it is decoded again, and refused."""
    token = tokens.expired(app, member.id)
    cached(app).put(token, {**tokens.claims_of(token), "type": "access"})
    assert_problem(
        anonymous.get("/api/users/me", headers={"Authorization": f"Bearer {token}"}), 401
    )
