"""Login throttling: 5 failed attempts per IP per window, then 429 until it ends.

Runs with the limiter's storage in memory and, when TEST_REDIS_URL is set, in Redis.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support import PASSWORD, assert_problem, eventually

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
STORAGES = ["memory://", *([TEST_REDIS_URL] if TEST_REDIS_URL else [])]


@pytest.fixture(params=STORAGES, ids=lambda uri: uri.split(":")[0])
def throttled(request, database_url, make_app):
    """An app counting failures in the given storage, with its own key prefix."""
    limited = make_app(
        DATABASE_URL=database_url,
        RATELIMIT_STORAGE_URI=request.param,
        LOGIN_RATE_LIMIT="5 per 2 seconds",
    )
    limited.config["RATELIMIT_KEY_PREFIX"] = uuid.uuid4().hex
    return limited


def attempt(client, email, password, ip="203.0.113.7"):
    return client.post(
        "/api/auth/token",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_after_five_failures_every_attempt_is_429_until_the_window_ends(throttled, member):
    client = throttled.test_client()
    for _ in range(5):
        assert attempt(client, member.email, "wrong-password").status_code == 401
    blocked = attempt(client, member.email, PASSWORD)  # even the right password
    assert_problem(blocked, 429)
    assert 1 <= int(blocked.headers["Retry-After"]) <= 2
    assert attempt(client, member.email, PASSWORD, ip="198.51.100.9").status_code == 200

    def login_once_the_window_ends():
        response = attempt(client, member.email, PASSWORD)
        if response.status_code != 200:
            assert_problem(response, 429)  # still blocked: never a 401, whatever the password
        return response

    # Retry-After is whole seconds, truncated: wait for the block to lift, not for the header.
    unblocked = eventually(
        login_once_the_window_ends, lambda response: response.status_code == 200, timeout=5
    )
    assert unblocked.json["access_token"]


def test_successful_logins_do_not_count(throttled, member):
    client = throttled.test_client()
    for _ in range(8):
        assert attempt(client, member.email, PASSWORD).status_code == 200
    for _ in range(5):
        assert attempt(client, member.email, "wrong-password").status_code == 401
    assert_problem(attempt(client, member.email, PASSWORD), 429)
