"""The token-state cache (PostgreSQL, `auth.token_states`): a warm credential costs no
query; every change that ends or narrows one is honoured, whoever makes it (this app,
another process, an operator's psql), even while notifications cannot arrive; and a
database that does not answer is 503, never a cached "come in"."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from backoffice.auth.token_states import TokenStates
from backoffice.extensions import db
from tests.auth import tokens
from tests.support import assert_problem, eventually, login

#: These tests need PostgreSQL's NOTIFY: they are generated for it alone.
on_postgresql_only = pytest.mark.parametrize(
    "database_url",
    ["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [],
    indirect=True,
)
DIVIDE = "/api/divide?a=1&b=2"  # authenticated, and no query of its own


def states_of(app) -> TokenStates:
    states = app.extensions["token_states"]
    assert states is not None
    return states


def listening(app) -> TokenStates:
    """The app's cache, once its listener is connected (it starts on first use)."""
    states = states_of(app)
    with app.app_context():
        states.epoch()
    eventually(lambda: states.connected, timeout=10, interval=0.01)
    return states


def engine_of(app):
    with app.app_context():
        return db.engine


@contextmanager
def statements(app) -> Iterator[list[str]]:
    """Every statement `app` sends to the database while the block runs."""
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        sent.append(statement)

    event.listen(engine_of(app), "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine_of(app), "before_cursor_execute", record)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sending(app, headers: dict[str, str]):
    """A client of `app` that sends `headers` with every request."""
    client = app.test_client()
    client.environ_base.update(
        {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    )
    return client


def key_of(client) -> dict[str, str]:
    created = client.post("/api/auth/api-keys", json={"name": "sync", "scopes": ["tools"]})
    assert created.status_code == 201
    return {"X-API-Key": created.json["key"]}


# --- no query for a warm credential ------------------------------------------------


@on_postgresql_only
def test_a_warm_token_or_key_costs_no_query(make_app, database_url, member):
    app = make_app(DATABASE_URL=database_url)
    listening(app)
    client = app.test_client()
    token = bearer(login(client, member)["access_token"])
    key = key_of(sending(app, token))
    for credential in (token, key):
        assert client.get(DIVIDE, headers=credential).status_code == 200  # fills
        with statements(app) as sent:
            answers = [client.get(DIVIDE, headers=credential) for _ in range(5)]
        assert [answer.status_code for answer in answers] == [200] * 5
        assert answers[0].json == {"result": 0.5}
        assert sent == []


@on_postgresql_only
def test_with_the_cache_off_every_request_asks_the_database(make_app, database_url, member):
    app = make_app(DATABASE_URL=database_url, AUTH_CACHE="false")
    assert app.extensions["token_states"] is None
    client = app.test_client()
    token = bearer(login(client, member)["access_token"])
    with statements(app) as sent:
        assert client.get(DIVIDE, headers=token).status_code == 200
        assert client.get(DIVIDE, headers=token).status_code == 200
    assert len(sent) == 2


# --- changes, wherever they are made -------------------------------------------


@on_postgresql_only
def test_an_operators_sql_deactivation_is_honoured_through_the_trigger(
    make_app, database_url, database, member
):
    app = make_app(DATABASE_URL=database_url)
    listening(app)
    client = app.test_client()
    token = bearer(login(client, member)["access_token"])
    key = key_of(sending(app, token))
    assert client.get(DIVIDE, headers=token).status_code == 200
    assert client.get(DIVIDE, headers=key).status_code == 200
    assert len(states_of(app)) == 2

    with database.connect() as psql:
        psql.execute(text("UPDATE users SET active = false WHERE id = :id"), {"id": member.id})
    done = time.monotonic()
    eventually(
        lambda: client.get(DIVIDE, headers=token).status_code,
        lambda s: s == 401,
        timeout=1,
        interval=0.001,
    )
    took = time.monotonic() - done
    assert_problem(client.get(DIVIDE, headers=key), 401)
    assert len(states_of(app)) == 0
    print(f"operator's deactivation refused after {took * 1000:.1f} ms")


@on_postgresql_only
def test_a_role_change_narrows_the_cached_principal(make_app, database_url, admin, as_user):
    app = make_app(DATABASE_URL=database_url)
    listening(app)
    client = app.test_client()
    token = bearer(login(client, admin)["access_token"])
    assert client.get("/api/users", headers=token).status_code == 200  # an admin view
    other = as_user(admin)  # the session app stands for another worker: it makes the change
    member = other.post(
        "/api/users",
        json={"name": "B", "email": "b@example.com", "password": "another long password"},
    )
    assert member.status_code == 201
    promoted = other.patch(f"/api/users/{member.json['id']}", json={"role": "admin"})
    assert promoted.status_code == 200
    demoted = sending(app, token).patch(f"/api/users/{admin.id}", json={"role": "member"})
    assert demoted.status_code == 200
    # This process made the change: refused at once, before any notification.
    assert_problem(client.get("/api/users", headers=token), 403)


# --- changes no trigger announces ------------------------------------------------------

#: The cache's maximum age in these tests: short, so each waits about a second.
MAX_AGE = 1.0
#: What a refusal may take beyond MAX_AGE on a loaded machine: a few requests.
MARGIN = 0.5
#: How a change reaches the database with no trigger firing, in one transaction: as a
#: logical replication apply or `pg_restore --disable-triggers` does, or with the table's
#: triggers disabled and enabled again around it (the listener, outside the transaction,
#: never sees them disabled).
BYPASSES = {
    "replica": ("SET LOCAL session_replication_role = replica", None),
    "triggers_off": (
        "ALTER TABLE {table} DISABLE TRIGGER USER",
        "ALTER TABLE {table} ENABLE TRIGGER USER",
    ),
}
#: What ends a credential: the table it changes, and how.
UNANNOUNCED = {
    "deactivation": ("users", "UPDATE users SET active = false WHERE id = :user"),
    "key_revocation": (
        "api_keys",
        "UPDATE api_keys SET revoked_at = now() WHERE user_id = :user",
    ),
    "family_revocation": (
        "revoked_tokens",
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES (:family, now() + interval '1 day')",
    ),
}


def change_unannounced(database, change: str, bypass: str, **params) -> None:
    """Make `change` in one transaction of the test's own, bypassing the triggers."""
    table, statement = UNANNOUNCED[change]
    before, after = BYPASSES[bypass]
    with database.execution_options(isolation_level="READ COMMITTED").begin() as psql:
        psql.execute(text(before.format(table=table)))
        psql.execute(text(statement), params)
        if after is not None:
            psql.execute(text(after.format(table=table)))


@on_postgresql_only
@pytest.mark.parametrize(
    ("change", "bypass"),
    [
        ("deactivation", "replica"),
        ("deactivation", "triggers_off"),
        ("key_revocation", "replica"),
        ("family_revocation", "replica"),
    ],
)
def test_a_change_no_trigger_announces_is_refused_within_the_maximum_age(
    make_app, database_url, database, member, change, bypass
):
    """No notification comes: the cache still vouches for the ended credential, until its
    entry is older than AUTH_CACHE_MAX_AGE and the database is asked again."""
    app = make_app(DATABASE_URL=database_url, AUTH_CACHE_MAX_AGE=str(MAX_AGE))
    states = listening(app)
    client = app.test_client()
    pair = login(client, member)
    token = bearer(pair["access_token"])
    key = key_of(sending(app, token))
    ended = {
        "deactivation": [token, key],
        "key_revocation": [key],
        "family_revocation": [token],
    }[change]
    assert [client.get(DIVIDE, headers=c).status_code for c in (token, key)] == [200, 200]
    family = f"family:{tokens.claims_of(pair['access_token'])['fam']}"
    change_unannounced(database, change, bypass, user=member.id, family=family)
    changed = time.monotonic()

    # The database says no, but nothing told this process: it answers from its cache...
    assert [client.get(DIVIDE, headers=c).status_code for c in ended] == [200] * len(ended)
    # ...no longer than the maximum age.
    for credential in ended:
        eventually(
            lambda c=credential: client.get(DIVIDE, headers=c).status_code,
            lambda status: status == 401,
            timeout=MAX_AGE + MARGIN,
            interval=0.01,
        )
    took = time.monotonic() - changed
    assert took <= MAX_AGE + MARGIN
    for credential in ended:
        response = client.get(DIVIDE, headers=credential)
        assert_problem(response, 401)
        assert "WWW-Authenticate" in response.headers
    assert states.connected  # refused by the maximum age, not by a lost listener
    print(f"{change} ({bypass}) refused {took * 1000:.0f} ms after the change")


# --- race-free fill ------------------------------------------------------------------


@on_postgresql_only
def test_a_change_committed_while_a_fill_queries_is_never_cached(
    make_app, database_url, database, member
):
    """The deactivation commits (and its notification is handled) between the token-state
    query and the store: the request that query serves is answered with what it read,
    but its answer is not kept, so the next request is refused."""
    app = make_app(DATABASE_URL=database_url)
    states = listening(app)
    client = app.test_client()
    token = bearer(login(client, member)["access_token"])
    engine = engine_of(app)
    fired = []

    def deactivate_meanwhile(_conn, _cursor, statement, *_args) -> None:
        if "token_generation" not in statement or fired:
            return
        fired.append(statement)
        before = states._epoch
        with database.connect() as psql:
            psql.execute(text("UPDATE users SET active = false WHERE id = :id"), {"id": member.id})
        eventually(lambda: states._epoch, lambda epoch: epoch != before, timeout=5, interval=0.001)

    event.listen(engine, "after_cursor_execute", deactivate_meanwhile)
    try:
        assert client.get(DIVIDE, headers=token).status_code == 200  # read before the change
    finally:
        event.remove(engine, "after_cursor_execute", deactivate_meanwhile)
    assert fired
    assert len(states) == 0
    assert_problem(client.get(DIVIDE, headers=token), 401)


# --- the listener lost, the database down ---------------------------------------------


def terminate_listener(postgres_admin, states: TokenStates) -> None:
    pid = states.listener.backend_pid
    with postgres_admin.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()


@on_postgresql_only
def test_while_the_listener_is_lost_no_stale_answer_is_given_and_it_reconnects(
    make_app, database_url, database, postgres_admin, member
):
    app = make_app(DATABASE_URL=database_url)
    states = listening(app)
    client = app.test_client()
    token = bearer(login(client, member)["access_token"])
    assert client.get(DIVIDE, headers=token).status_code == 200
    assert len(states) == 1
    lost_pid = states.listener.backend_pid

    terminate_listener(postgres_admin, states)
    eventually(lambda: not states.connected, timeout=10, interval=0.001)
    # Until the listener has reconnected, its notifications are lost: the cache is empty
    # and bypassed, so a change made meanwhile by anyone is honoured all the same.
    with database.connect() as psql:
        psql.execute(
            text("UPDATE users SET token_generation = token_generation + 1 WHERE id = :id"),
            {"id": member.id},
        )
    assert_problem(client.get(DIVIDE, headers=token), 401)

    eventually(
        lambda: states.connected and states.listener.backend_pid != lost_pid,
        timeout=10,
        interval=0.01,
    )
    fresh = bearer(login(client, member)["access_token"])
    assert client.get(DIVIDE, headers=fresh).status_code == 200
    with statements(app) as sent:
        assert client.get(DIVIDE, headers=fresh).status_code == 200
    assert sent == []  # cached again once listening
    assert_problem(client.get(DIVIDE, headers=token), 401)


@on_postgresql_only
def test_a_listener_not_heard_from_is_not_trusted(make_app, database_url, member):
    """A silent loss (no error, no heartbeat): after STALE_AFTER_SECONDS the cache is
    bypassed and emptied, as if the listener were lost."""
    now = [0.0]
    app = make_app(DATABASE_URL=database_url)
    states = listening(app)
    states._clock = lambda: now[0]
    states.alive()
    client = app.test_client()
    token = bearer(login(client, member)["access_token"])
    assert client.get(DIVIDE, headers=token).status_code == 200
    assert len(states) == 1
    now[0] += 10  # the listener's thread stops proving its connection alive
    with statements(app) as sent:
        assert client.get(DIVIDE, headers=token).status_code == 200
    assert len(sent) == 1
    assert len(states) == 0


@on_postgresql_only
def test_a_database_that_does_not_answer_is_503_never_a_cached_welcome(
    make_app, database_url, postgres_admin, member
):
    app = make_app(DATABASE_URL=database_url)
    states = listening(app)
    client = app.test_client()
    token = bearer(login(client, member)["access_token"])
    key = key_of(sending(app, token))
    assert client.get(DIVIDE, headers=token).status_code == 200
    assert client.get(DIVIDE, headers=key).status_code == 200
    name = make_url(database_url).database
    with postgres_admin.connect() as admin:
        admin.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        try:
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"
                ),
                {"name": name},
            )
            eventually(lambda: not states.connected, timeout=10, interval=0.01)
            for credential in (token, key):
                response = client.get(DIVIDE, headers=credential)
                body = assert_problem(response, 503)
                assert body["type"] == "/problems/dependency-unavailable"
                assert response.headers["Retry-After"] == "5"
        finally:
            admin.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    eventually(lambda: states.connected, timeout=10, interval=0.05)
    assert client.get(DIVIDE, headers=token).status_code == 200


# --- the bound -----------------------------------------------------------------------


def test_the_cache_is_bounded_and_forgets_its_indexes_with_its_entries():
    """No database: the view alone. Old entries make way for new ones, and what a user's
    or a family's notification would evict is looked up only among live entries."""
    states = TokenStates(listen=None, max_age=60, size=2)
    with_listener = states.epoch()  # first use: no listener to start, not trusted
    assert with_listener is None
    states.listening()
    users = [uuid.uuid4() for _ in range(3)]
    for n, user in enumerate(users):
        epoch = states.epoch()
        assert epoch is not None
        assert states.store_token(epoch, (user, f"jti-{n}", f"family:{n}", 0), "member")
    assert len(states) == 2
    assert states.token((users[0], "jti-0", "family:0", 0)) is None
    assert states._tokens_of.keys() == {users[1], users[2]}
    assert states._by_revocation.keys() == {"jti-1", "family:1", "jti-2", "family:2"}
    states.forget_revoked("family:1")
    assert states.token((users[1], "jti-1", "family:1", 0)) is None
    assert states._by_revocation.keys() == {"jti-2", "family:2"}
    stale = states.epoch()
    states.forget_user(users[2])
    assert len(states) == 0
    assert states._tokens_of == {}
    assert states._by_revocation == {}
    assert stale is not None
    assert not states.store_token(stale, (users[2], "jti-2", "family:2", 0), "member")
    states.lost()
    assert states.epoch() is None


def test_an_entry_older_than_the_maximum_age_is_asked_again():
    """No database: the view alone, on a clock of the test's own. An entry is served up to
    its maximum age after it was filled; past it, it is dropped (with its indexes) and
    the caller asks the database. Updating a kept key does not make it younger."""
    now = [100.0]
    states = TokenStates(listen=None, max_age=5.0, clock=lambda: now[0])
    states.epoch()
    states.listening()
    user = uuid.uuid4()
    token_key = (user, "jti-1", "family:1", 0)
    key_row = SimpleNamespace(user_id=user, last_used_at=None)
    epoch = states.epoch()
    assert epoch is not None
    assert states.store_token(epoch, token_key, "member")
    assert states.store_api_key(epoch, "abcd1234", user, key_row)

    now[0] += 4.9
    states.alive()
    assert states.token(token_key) == "member"
    states.replace_api_key("abcd1234", SimpleNamespace(user_id=user, last_used_at=now[0]))
    assert states.api_key("abcd1234").last_used_at == now[0]

    now[0] += 0.2  # 5.1 s after the fill
    states.alive()
    fresh = states.epoch()
    assert fresh == epoch  # nothing was announced: the race-free fill logic is untouched
    assert states.token(token_key) is None
    assert states.api_key("abcd1234") is None
    assert len(states) == 0
    assert states._tokens_of == {}
    assert states._by_revocation == {}
    assert states._keys_of == {}
    assert states.store_token(fresh, token_key, "member")  # filled again, young again
    assert states.token(token_key) == "member"


@on_postgresql_only
def test_the_cache_is_not_used_while_a_trigger_is_disabled(
    make_app, database_url, database, member
):
    """A database that would not announce every change (not migrated, or a trigger turned
    off by hand): the listener does not vouch for the cache, every request asks."""
    app = make_app(DATABASE_URL=database_url)
    states = listening(app)
    client = app.test_client()
    token = bearer(login(client, member)["access_token"])
    assert client.get(DIVIDE, headers=token).status_code == 200
    with database.connect() as psql:
        psql.execute(text("ALTER TABLE users DISABLE TRIGGER backoffice_auth_user_updated"))
        try:
            eventually(lambda: not states.connected, timeout=10, interval=0.01)
            assert len(states) == 0
            with statements(app) as sent:
                assert client.get(DIVIDE, headers=token).status_code == 200
                assert client.get(DIVIDE, headers=token).status_code == 200
            assert len(sent) == 2
        finally:
            psql.execute(text("ALTER TABLE users ENABLE TRIGGER backoffice_auth_user_updated"))
    eventually(lambda: states.connected, timeout=10, interval=0.01)
    assert client.get(DIVIDE, headers=token).status_code == 200
    with statements(app) as sent:
        assert client.get(DIVIDE, headers=token).status_code == 200
    assert sent == []
