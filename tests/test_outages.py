"""Dependencies down (PRODUCT.md §1): 503 problem+json with Retry-After, never a 500;
authentication and login limits fail closed; each outage is logged once, as a warning;
service resumes by itself when the dependency comes back.

The services are real: a throwaway Redis on a port of the test's own, stopped and started
by the test; PostgreSQL connections of the test's own app, terminated with
`pg_terminate_backend`; a database URL pointing at a closed port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from backoffice.dependencies import Outages
from backoffice.extensions import db
from tests.support import PASSWORD, assert_problem, eventually, login

DEPENDENCY_UNAVAILABLE = "/problems/dependency-unavailable"
#: A PostgreSQL URL nothing answers at.
CLOSED_PORT = "postgresql+psycopg://postgres@127.0.0.1:1/none"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayRedis:
    """A Redis server of one test's own, which the test stops and starts."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "the outage tests need redis-server on the PATH"
        options = {"port": self.port, "bind": "127.0.0.1", "save": "", "appendonly": "no"}
        arguments = [item for name, value in options.items() for item in (f"--{name}", str(value))]
        self.process = subprocess.Popen(  # noqa: S603 (a fixed command line)
            [server, *arguments, "--daemonize", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with redis.Redis.from_url(self.url, socket_connect_timeout=1) as client:
            eventually(lambda: self._answers(client), timeout=10, interval=0.05)

    def stop(self) -> None:
        """Kill it outright, as a crash or an out-of-memory kill would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False


@pytest.fixture
def redis_server(tmp_path, make_app, database_url) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.stop()
    # Flask-Limiter keeps one storage for every app of a process (the last app bound
    # wins): leave it on a live one, in memory, for what runs after this test.
    make_app(DATABASE_URL=database_url)


@pytest.fixture
def redis_app(make_app, database_url, queue_settings, redis_server):
    """An app counting login attempts and chat calls in the throwaway Redis."""
    return make_app(
        DATABASE_URL=database_url, RATELIMIT_STORAGE_URI=redis_server.url, **queue_settings
    )


def bearer_client(app, account):
    client = app.test_client()
    token = login(client, account)["access_token"]
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def assert_unavailable(response, dependency_detail: str) -> None:
    body = assert_problem(response, 503)
    assert body["type"] == DEPENDENCY_UNAVAILABLE
    assert body["title"] == "Dependency unavailable"
    assert dependency_detail in body["detail"]
    assert response.headers["Retry-After"] == "5"


def outage_lines(logs, event: str = "dependency_unavailable") -> list[dict]:
    return [line for line in logs if line["event"] == event]


def assert_no_tracebacks(logs) -> None:
    assert [line for line in logs if line.get("exc_info") or line["log_level"] == "error"] == []


# --- logged once per outage ---------------------------------------------------------


def test_an_outage_is_logged_once_reminded_while_it_lasts_and_its_end_once():
    now = [1000.0]
    outages = Outages(clock=lambda: now[0])
    refused = redis.exceptions.ConnectionError("Connection refused")
    with capture_logs() as logs:
        for _ in range(50):
            outages.failed("rate_limit_store", refused)
            now[0] += 1  # fifty failures over fifty seconds: one warning
        outages.failed("database", refused)  # another dependency: its own warning
        now[0] += 11
        outages.failed("rate_limit_store", refused)  # a minute on: reminded once
        outages.answered("rate_limit_store")
        outages.answered("rate_limit_store")  # already up: nothing more
    assert [(line["event"], line["dependency"]) for line in logs] == [
        ("dependency_unavailable", "rate_limit_store"),
        ("dependency_unavailable", "database"),
        ("dependency_unavailable", "rate_limit_store"),
        ("dependency_recovered", "rate_limit_store"),
    ]
    assert logs[2]["failures"] == 51
    assert logs[2]["down_seconds"] == 61.0
    assert (logs[3]["failures"], logs[3]["down_seconds"]) == (51, 61.0)
    assert all(line["log_level"] == "warning" for line in logs[:3])


# --- Redis: rate limits -------------------------------------------------------


def test_with_redis_down_tokens_are_checked_and_ended_sessions_refused_as_ever(
    redis_app, redis_server, member
):
    """Revocations live in the database: a Redis that does not answer (or comes back
    empty) changes nothing for a bearer request, nor for a session that was ended."""
    client = bearer_client(redis_app, member)
    ended = login(redis_app.test_client(), member)["access_token"]
    logout = client.post("/api/auth/logout", headers={"Authorization": f"Bearer {ended}"})
    assert logout.status_code == 204

    redis_server.stop()
    with capture_logs(processors=[merge_contextvars]) as logs:
        assert client.get("/api/items").status_code == 200
        gone = client.get("/api/items", headers={"Authorization": f"Bearer {ended}"})
        assert_problem(gone, 401)
    assert outage_lines(logs) == []
    assert_no_tracebacks(logs)

    redis_server.start()  # empty: it kept nothing ("save" and "appendonly" are off)
    assert_problem(client.get("/api/items", headers={"Authorization": f"Bearer {ended}"}), 401)
    assert client.get("/api/items").status_code == 200


def test_login_is_503_not_unthrottled_while_the_rate_limit_store_is_down(
    redis_app, redis_server, member
):
    client = redis_app.test_client()
    login(client, member)

    redis_server.stop()
    with capture_logs(processors=[merge_contextvars]) as logs:
        for password in (PASSWORD, "wrong-password", PASSWORD):
            response = client.post(
                "/api/auth/token", json={"email": member.email, "password": password}
            )
            assert_unavailable(response, "rate-limit store")
            assert "access_token" not in response.json
    [warning] = outage_lines(logs)
    assert warning["dependency"] == "rate_limit_store"
    assert_no_tracebacks(logs)

    redis_server.start()
    assert login(client, member)["access_token"]


def test_readiness_names_every_dependency_and_the_redis_store_that_is_down(redis_app, redis_server):
    client = redis_app.test_client()
    healthy = client.get("/api/health")
    assert healthy.status_code == 200
    assert set(healthy.json["checks"]) == {
        "database",
        "queue",
        "revocation_store",
        "rate_limit_store",
    }

    redis_server.stop()
    degraded = client.get("/api/health")
    assert degraded.status_code == 503
    assert degraded.headers["Retry-After"] == "5"
    assert degraded.json["status"] == "degraded"
    assert degraded.json["checks"] == {
        "database": "ok",
        "queue": "ok",
        "revocation_store": "ok",  # in the database
        "rate_limit_store": "unavailable",
    }

    redis_server.start()
    assert client.get("/api/health").json["checks"] == {
        "database": "ok",
        "queue": "ok",
        "revocation_store": "ok",
        "rate_limit_store": "ok",
    }


# --- the database ---------------------------------------------------------------


def test_an_unreachable_database_is_503_with_retry_after_never_500(
    make_app, client, anonymous, member
):
    """DATABASE_URL pointing at a closed port: every request that needs it is 503."""
    down = make_app(DATABASE_URL=CLOSED_PORT, WEBHOOK_UNSIGNED_SOURCES="default").test_client()
    token = client.environ_base["HTTP_AUTHORIZATION"]
    refresh_token = {"Authorization": f"Bearer {login(anonymous, member)['refresh_token']}"}
    with capture_logs(processors=[merge_contextvars]) as logs:
        # Authentication fails closed: the token is good, its user and its revocation
        # cannot be read. Nor can a refresh token be spent, nor a session ended.
        assert_unavailable(down.get("/api/items", headers={"Authorization": token}), "database")
        assert_unavailable(down.post("/api/auth/refresh", headers=refresh_token), "database")
        assert_unavailable(
            down.post("/api/auth/logout", headers={"Authorization": token}), "database"
        )
        assert_unavailable(
            down.post("/api/auth/token", json={"email": member.email, "password": PASSWORD}),
            "database",
        )
        assert_unavailable(
            down.post("/api/webhook", json={"id": "evt_1", "type": "ping"}), "database"
        )
    [warning] = outage_lines(logs)
    assert warning["dependency"] == "database"
    assert warning["failures"] == 1
    assert_no_tracebacks(logs)


#: Terminating server connections needs PostgreSQL: these tests run on it alone (they are
#: not generated for SQLite at all, rather than skipped there).
on_postgresql_only = pytest.mark.parametrize(
    "database_url",
    ["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [],
    indirect=True,
)


def _pooled_backends(app, count: int) -> list[int]:
    """Fill the app's pool with `count` connections; the server's process ids of them."""
    with app.app_context():
        connections = [db.engine.connect() for _ in range(count)]
        pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() for c in connections]
        for connection in connections:
            connection.close()  # back to the pool, open
    return pids


@on_postgresql_only
def test_a_postgresql_restart_costs_no_request(make_app, database_url, postgres_admin, member):
    """Every pooled connection terminated by the server, as a restart does: the next
    requests are all served, and readiness says ok (stale connections are replaced
    before use, not answered 500 or 503)."""
    app = make_app(DATABASE_URL=database_url, DB_POOL_SIZE="4")
    client = bearer_client(app, member)
    assert client.get("/api/items").status_code == 200
    pids = _pooled_backends(app, 4)

    terminate = text("SELECT pg_terminate_backend(pid) FROM unnest(:pids) AS pid")
    alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)")
    with postgres_admin.connect() as admin:
        assert all(admin.execute(terminate, {"pids": pids}).scalars())
        eventually(lambda: admin.execute(alive, {"pids": pids}).scalar_one(), lambda n: n == 0)

    with capture_logs(processors=[merge_contextvars]) as logs:
        statuses = [client.get("/api/items").status_code for _ in range(10)]
        statuses.append(client.post("/api/items", json={"name": "After restart"}).status_code)
        readiness = client.get("/api/health")
    assert statuses == [200] * 10 + [201]
    assert readiness.status_code == 200
    assert outage_lines(logs) == []
    assert_no_tracebacks(logs)


@on_postgresql_only
def test_a_connection_killed_mid_request_is_503_then_service_resumes(
    make_app, database_url, postgres_admin, member
):
    """A backend terminated while its request holds it: that request cannot be served
    (503, Retry-After), the next one is."""
    app = make_app(DATABASE_URL=database_url)

    @app.get("/held-connection")
    def held_connection():
        backend = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with postgres_admin.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        db.session.execute(text("SELECT 1"))  # on the terminated connection
        return {}

    client = bearer_client(app, member)

    with capture_logs(processors=[merge_contextvars]) as logs:
        assert_unavailable(client.get("/held-connection"), "database")
        assert client.get("/api/items").status_code == 200
    [warning] = outage_lines(logs)
    assert warning["dependency"] == "database"
    assert [line["dependency"] for line in outage_lines(logs, "dependency_recovered")] == [
        "database"
    ]
    assert_no_tracebacks(logs)
