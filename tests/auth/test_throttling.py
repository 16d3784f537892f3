"""Per-IP limits: failed password attempts (logins, wrong current passwords) and sign-ups.

Runs with the limiter's storage in the database (the default), in memory and, when
TEST_REDIS_URL is set, in Redis (a database of this test worker's own). The concurrent
tests race 50 clients; with the database or Redis they are spread over several app
instances sharing the storage, as several server processes would; memory storage counts
per process, so there one app takes them all.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest

from backoffice import attempts
from backoffice.users.models import User
from tests.auth.racing import all_at_once
from tests.support import PASSWORD, STORES, assert_problem, count_rows


@pytest.fixture(params=STORES)
def storage(request) -> str:
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    return f"{request.param}://"


@pytest.fixture
def throttled_apps(app, storage, database_url, make_app):
    """`make(n, **settings)`: n app instances counting in `storage` (one for memory://), on
    the database `app` has migrated (and cleans after the test)."""

    def make(n: int = 3, **overrides: str):
        n = n if storage != "memory://" else 1
        return [
            make_app(DATABASE_URL=database_url, RATELIMIT_STORAGE_URI=storage, **overrides)
            for _ in range(n)
        ]

    return make


@pytest.fixture
def throttled(throttled_apps):
    """An app whose limits end every two seconds."""
    return throttled_apps(1, LOGIN_RATE_LIMIT="5 per 2 seconds")[0]


@pytest.fixture
def ip() -> str:
    """A client address of this test's own, so no other test's counts can reach it."""
    return str(ipaddress.IPv6Address("2001:db8::") + random.getrandbits(64))


class Clock:
    """The limits' clock, held still (30 s into a clock minute, 30 min into an hour) until
    a test moves it: no window ends in the middle of a test unless the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_030.0

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(attempts, "time", clock)
    return clock


def attempt(client, email, password, ip="203.0.113.7"):
    return client.post(
        "/api/auth/token",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_after_five_failures_every_attempt_is_429_until_the_window_ends(throttled, member, clock):
    client = throttled.test_client()
    for _ in range(5):
        assert attempt(client, member.email, "wrong-password").status_code == 401
    blocked = attempt(client, member.email, PASSWORD)  # even the right password
    assert_problem(blocked, 429)
    assert blocked.headers["Retry-After"] == "2"  # the window is clock-aligned: :30 to :32
    assert attempt(client, member.email, PASSWORD, ip="198.51.100.9").status_code == 200
    clock.advance(1.99)
    assert_problem(attempt(client, member.email, PASSWORD), 429)  # never a 401 meanwhile
    clock.advance(0.01)
    assert attempt(client, member.email, PASSWORD).json["access_token"]


def test_refusals_write_nothing_and_are_answered_from_memory(throttled, member, clock):
    """A storm past the limit neither writes the count (no row lock to queue on) nor, for
    `FULL_WINDOW_MEMORY` seconds after a refusal, reads it."""
    client = throttled.test_client()
    for _ in range(5):
        assert attempt(client, member.email, "wrong-password").status_code == 401
    with throttled.app_context():
        item = attempts.PASSWORD_GUESSES.item()
        window = int(clock.now // item.get_expiry())
        key = item.key_for("password", "203.0.113.7", str(window))
        storage = attempts.limiter.storage
        for _ in range(20):
            assert_problem(attempt(client, member.email, "wrong-password"), 429)
        assert storage.get(key) == 5  # the refusals took no place, not even for a moment
        # An attempt in flight gives its place back (a right password): until the memory
        # of the full window fades, the address is still refused; never let in past it.
        storage.incr(key, item.get_expiry(), amount=-1)
    assert_problem(attempt(client, member.email, "wrong-password"), 429)
    clock.advance(attempts.FULL_WINDOW_MEMORY)
    assert attempt(client, member.email, "wrong-password").status_code == 401
    assert_problem(attempt(client, member.email, "wrong-password"), 429)
    with throttled.app_context():
        assert storage.get(key) == 5


def test_successful_logins_do_not_count(throttled, member):
    client = throttled.test_client()
    for _ in range(8):
        assert attempt(client, member.email, PASSWORD).status_code == 200
    for _ in range(5):
        assert attempt(client, member.email, "wrong-password").status_code == 401
    assert_problem(attempt(client, member.email, PASSWORD), 429)


def test_a_blocked_address_is_429_before_its_body_is_even_read(throttled, member):
    client = throttled.test_client()
    for _ in range(5):
        attempt(client, member.email, "wrong-password")
    empty = client.post("/api/auth/token", json={}, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert_problem(empty, 429)


def test_concurrent_wrong_passwords_get_exactly_the_limit_of_401s(throttled_apps, member, ip):
    """The bound holds however many attempts are in flight: each takes its place in the
    window before its password is checked."""
    apps = throttled_apps(3, LOGIN_RATE_LIMIT="5 per minute")
    clients = [apps[n % len(apps)].test_client() for n in range(50)]
    answers = all_at_once(
        [lambda c=c: attempt(c, member.email, "wrong-password", ip) for c in clients]
    )
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {401: 5, 429: 45}
    for answer in answers:
        if answer.status_code == 429:
            assert_problem(answer, 429)
            assert 1 <= int(answer.headers["Retry-After"]) <= 30
    # The right password is refused too, from that address only.
    assert_problem(attempt(clients[0], member.email, PASSWORD, ip), 429)
    assert attempt(clients[0], member.email, PASSWORD, "198.51.100.9").status_code == 200


def test_concurrent_right_passwords_all_get_in_and_give_their_places_back(
    throttled_apps, member, ip
):
    apps = throttled_apps(3, LOGIN_RATE_LIMIT="5 per minute")
    clients = [apps[n % len(apps)].test_client() for n in range(5)]
    answers = all_at_once([lambda c=c: attempt(c, member.email, PASSWORD, ip) for c in clients])
    assert [answer.status_code for answer in answers] == [200] * 5
    for _ in range(5):
        assert attempt(clients[0], member.email, "wrong-password", ip).status_code == 401
    assert_problem(attempt(clients[0], member.email, PASSWORD, ip), 429)


@pytest.mark.parametrize("shape", ["json", "form"])
def test_a_malformed_email_at_login_is_422_and_not_a_failed_attempt(throttled, member, shape):
    """A NUL (which PostgreSQL cannot even store) or no @: the email is checked as at
    sign-up. No password is checked, so nothing counts against the address."""
    client = throttled.test_client()
    malformed = ["a\x00b@example.com", member.email + "\x00", "no-at-sign", "a@b@c.com"]
    for email in malformed * 2:  # more than the limit
        body = {"email": email, "password": "wrong-password"}
        if shape == "json":
            response = client.post("/api/auth/token", json=body)
        else:
            form = {"username": email, "password": "wrong-password", "grant_type": "password"}
            response = client.post("/api/auth/token", data=form)
        problem = assert_problem(response, 422)
        assert problem["errors"][0]["field"] in {"email", "username"}
    assert attempt(client, member.email, PASSWORD, ip="127.0.0.1").status_code == 200


def test_wrong_current_passwords_count_as_failed_logins(throttled, as_user, member):
    """A stolen session cannot guess the password through a password change either."""
    caller = as_user(member)
    client = throttled.test_client()
    client.environ_base.update(caller.environ_base)
    client.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    change = {"password": "a brand new secret", "current_password": "not-it"}
    for _ in range(5):
        assert_problem(client.patch(f"/api/users/{member.id}", json=change), 422)
    right = {"password": "a brand new secret", "current_password": PASSWORD}
    assert_problem(client.patch(f"/api/users/{member.id}", json=right), 429)
    assert_problem(attempt(client, member.email, PASSWORD, ip="192.0.2.44"), 429)
    # Changes that check no password are not limited.
    assert client.patch(f"/api/users/{member.id}", json={"name": "Still Me"}).status_code == 200


NEW = {"name": "Sign Up", "password": "engine-no-1"}


def sign_up(client, email: str, ip: str):
    return client.post("/api/users", json={**NEW, "email": email}, environ_base={"REMOTE_ADDR": ip})


def test_concurrent_sign_ups_from_one_address_create_exactly_the_limit(
    throttled_apps, app, in_db, ip
):
    apps = throttled_apps(3, SIGNUP_RATE_LIMIT="5 per minute")
    clients = [apps[n % len(apps)].test_client() for n in range(50)]
    answers = all_at_once(
        [lambda n=n, c=c: sign_up(c, f"new-{n}@example.com", ip) for n, c in enumerate(clients)]
    )
    assert Counter(answer.status_code for answer in answers) == {201: 5, 429: 45}
    assert in_db(lambda: count_rows(User)) == 5
    assert sign_up(clients[0], "elsewhere@example.com", "198.51.100.9").status_code == 201


def test_sign_ups_finding_the_email_taken_count_too(throttled_apps, make_user, ip):
    """Probing which emails exist (409) is limited like creating accounts."""
    taken = make_user()
    apps = throttled_apps(3, SIGNUP_RATE_LIMIT="5 per minute")
    clients = [apps[n % len(apps)].test_client() for n in range(20)]
    answers = all_at_once([lambda c=c: sign_up(c, taken.email, ip) for c in clients])
    assert Counter(answer.status_code for answer in answers) == {409: 5, 429: 15}


def test_an_invalid_sign_up_gives_its_place_back(throttled_apps, ip):
    client = throttled_apps(1, SIGNUP_RATE_LIMIT="1 per minute")[0].test_client()
    for _ in range(3):
        assert_problem(sign_up(client, "not-an-email", ip), 422)
    assert sign_up(client, "valid@example.com", ip).status_code == 201
    assert_problem(sign_up(client, "another@example.com", ip), 429)


def test_admins_creating_users_are_not_limited(throttled_apps, as_user, admin, ip):
    client = throttled_apps(1, SIGNUP_RATE_LIMIT="1 per minute")[0].test_client()
    client.environ_base.update(as_user(admin).environ_base)
    for n in range(3):
        assert sign_up(client, f"staff-{n}@example.com", ip).status_code == 201
