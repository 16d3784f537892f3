"""Fixtures: one app per database backend, a clean database for every test.

Every test that takes `app` or `client` runs on SQLite and, when TEST_DATABASE_URL is
set, again on PostgreSQL, in databases the suite creates on that server (the one the
URL names need not exist). A PostgreSQL that was asked for but does not answer, or will
not let the suite create databases, ends the session at its start with one line: the
run fails, it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid

# Multiprocess metrics, as in production (see backoffice.metrics): prometheus_client reads
# this when first imported, which importing backoffice does, so it is set before that. A
# directory of this test process's own, shared with the Celery workers and scripts its
# tests start (they inherit the environment), never with another xdist worker. A test
# that starts `deploy/serve` gives it a directory of its own: the script empties it.
METRICS_DIR = tempfile.mkdtemp(prefix="backoffice-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from backoffice import create_app, work
from backoffice.config import normalize_database_url
from backoffice.extensions import db, limiter
from backoffice.users import service as users
from backoffice.users.models import Role
from tests.postgres_server import ServerUnusable, maintenance_url
from tests.support import PASSWORD, TEST_SECRET_KEY, Account, eventually, login, settings

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite", *(["postgresql"] if TEST_DATABASE_URL else [])]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Check the PostgreSQL server once, before any test: a server that cannot serve the
    suite is one line and a failed run, not an error in every test that uses it. (xdist's
    workers start only after the controller passed this; they need not ask again.)"""
    if not TEST_DATABASE_URL or hasattr(session.config, "workerinput"):
        return
    try:
        maintenance_url(TEST_DATABASE_URL)
    except ServerUnusable as error:
        raise pytest.UsageError(str(error)) from None


#: Fixtures that start a real Celery worker: a test using one is marked `worker`.
WORKER_FIXTURES = frozenset({"worker", "start_worker"})
#: Fixtures that drive Chromium (tests/browser): a test using one is marked `browser`.
BROWSER_FIXTURES = frozenset({"browser", "page"})


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Mark every test that starts a Celery worker or a browser, so
    `-m "not worker and not browser"` is the fast loop (before `-m` selects); then, once
    pytest has ordered the tests, run those that need no database first.

    pytest puts those last (after grouping the others by backend), and they hold the
    suite's longest single tests (the docs examples against a real server, a pass over
    every code point, `flask` and pytest run as processes): run last, one of them kept one
    xdist worker busy after the other had run out of tests. Moved ahead, the run ends on
    short tests that the two workers share out evenly."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if WORKER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.worker)
        if BROWSER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.browser)
    yield
    uses = [("database_url" in getattr(item, "fixturenames", ()), item) for item in items]
    items[:] = [item for db, item in uses if not db] + [item for db, item in uses if db]


@pytest.fixture(scope="session", autouse=True)
def _metrics_dir() -> Iterator[str]:
    """The multiprocess metrics directory, removed when the session ends."""
    yield METRICS_DIR
    shutil.rmtree(METRICS_DIR, ignore_errors=True)


#: Set to run two checkouts' suites side by side on one PostgreSQL and Redis: a prefix for
#: the test databases' names, and the first Redis database index this run may use.
TEST_NAMESPACE = os.environ.get("TEST_NAMESPACE", "")
TEST_REDIS_FIRST_DB = int(os.environ.get("TEST_REDIS_FIRST_DB", "1"))


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def redis_index(worker_id: str) -> int:
    """The Redis database this test worker owns (its broker beside PostgreSQL, and its
    limits in Redis), so concurrent test runs never count in each other's keys nor wipe
    them."""
    return TEST_REDIS_FIRST_DB + (int(worker_id[2:]) if worker_id.startswith("gw") else 0)


def _postgres_database(worker: str) -> Iterator[str]:
    """A database of this worker's own on the TEST_DATABASE_URL server, dropped afterwards
    (created through the server's maintenance database: the named one need not exist)."""
    assert TEST_DATABASE_URL
    server = make_url(normalize_database_url(TEST_DATABASE_URL))
    name = f"backoffice_test_{TEST_NAMESPACE}{worker}"
    try:
        admin = create_engine(maintenance_url(TEST_DATABASE_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
            # A commit need not wait for its WAL to reach the disk: that only matters if
            # the server itself crashes, which no test does (a terminated backend loses
            # nothing). On a shared disk that wait was most of a write's time.
            connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    except Exception as error:  # the run must fail loudly, not skip
        pytest.fail(f"TEST_DATABASE_URL is set but unusable: {error}", pytrace=False)
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        yield from _postgres_database(worker_id)


@pytest.fixture
def database(database_url: str) -> Iterator[Any]:
    """A connection of the test's own to the app's database: another process, an operator."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_admin(database_url: str) -> Iterator[Any]:
    """The PostgreSQL server's maintenance database, to terminate backends or refuse
    connections (PostgreSQL-only tests)."""
    assert TEST_DATABASE_URL
    engine = create_engine(maintenance_url(TEST_DATABASE_URL), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
#: Short enough that tests see a dead worker's work taken over within seconds.
JOB_LEASE_SECONDS = "3"
#: The same for messages a dead worker had taken and not started.
RESEND_UNCLAIMED_SECONDS = "3"


@pytest.fixture(scope="session")
def queue_settings(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, redis_index: int
) -> dict[str, str]:
    """The broker the app and its Celery worker share: SQLite beside SQLite, Redis beside
    PostgreSQL (a Redis database of this test worker's own, so runs never mix)."""
    if database_url.startswith("sqlite") or not TEST_REDIS_URL:
        broker = f"sqla+sqlite:///{tmp_path_factory.mktemp('broker') / 'broker.db'}"
    else:
        broker = str(make_url(TEST_REDIS_URL).set(database=str(redis_index)))
    return {
        "CELERY_BROKER_URL": broker,
        "JOB_LEASE_SECONDS": JOB_LEASE_SECONDS,
        "WEBHOOK_LEASE_SECONDS": JOB_LEASE_SECONDS,
        "RELAY_INTERVAL_SECONDS": "0.5",
        "RESEND_UNCLAIMED_SECONDS": RESEND_UNCLAIMED_SECONDS,
        # Test workers prune and tally the overview's figures only where a test asks them
        # to (either would race the tests that prune or tally themselves).
        "PRUNE_INTERVAL_SECONDS": "0",
        "ACTIVITY_INTERVAL_SECONDS": "0",
    }


@pytest.fixture(scope="session")
def app(database_url: str, queue_settings: dict[str, str]) -> Iterator[APIFlask]:
    app = create_app(settings(DATABASE_URL=database_url, **queue_settings))
    with app.app_context():
        flask_migrate.upgrade()
    yield app
    _close(app)


@pytest.fixture(scope="session")
def worker_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the Celery workers of `start_worker` write their output, one file each."""
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session")
def start_worker(
    app: APIFlask, database_url: str, queue_settings: dict[str, str], worker_logs: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real Celery workers (the production worker plus the test-only kinds of work
    of `tests.testing_worker`) on the app's database and broker; every one started is
    stopped at the end of the session."""
    started: list[subprocess.Popen[bytes]] = []
    logs = worker_logs
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(logs),
        "LOG_LEVEL": "INFO",
        **queue_settings,
    }

    def start(*arguments: str, **overrides: str) -> subprocess.Popen[bytes]:
        """A worker with these environment `overrides`, and these `arguments` after the
        usual ones (a later option wins: `--pool threads` replaces `--pool solo`), once it
        takes messages (it logs `ready.`): work sent to it from then on is its own to claim
        before any relay would send it again (RESEND_UNCLAIMED_SECONDS)."""
        path = logs / f"worker-{len(started)}.log"
        log = path.open("wb")
        process = subprocess.Popen(  # noqa: S603 (our worker, with the test's arguments)
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.testing_worker",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                *arguments,
            ],
            env={**env, **overrides},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        log.close()  # the child has its own descriptor
        eventually(lambda: process.poll() is not None or b" ready." in path.read_bytes())
        assert process.poll() is None, path.read_text()
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def worker(start_worker: Callable[..., subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """One Celery worker for the session, for tests that need jobs to run."""
    return start_worker()


def _close(app: APIFlask) -> None:
    """Close what an app holds open: its token-state listener, its model server client
    (a kept-alive connection left to the garbage collector warns in a later test) and its
    database pool."""
    states = app.extensions.get("token_states")
    if states is not None:
        states.stop()
    app.extensions["chat_gateway"].close()
    work.stop_sender(app)
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def unread_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIFlask]:
    """Another app on the test's database whose broker no worker reads: the work it
    queues stays queued (a job stays cancellable). One per session and backend: made per
    test, as `make_app` would, each one paid for a new app and a new broker's tables."""
    broker = tmp_path_factory.mktemp("unread") / "broker.db"
    app = create_app(
        settings(DATABASE_URL=database_url, CELERY_BROKER_URL=f"sqla+sqlite:///{broker}")
    )
    yield app
    _close(app)


@pytest.fixture
def make_app() -> Iterator[Callable[..., APIFlask]]:
    """Another app, as another worker process or another configuration would be."""
    made: list[APIFlask] = []

    def make(**overrides: str) -> APIFlask:
        made.append(create_app(settings(**overrides)))
        return made[-1]

    yield make
    for app in made:
        _close(app)


@pytest.fixture(autouse=True)
def _clean_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty every table after a test that used the database, so none depends on another."""
    yield
    if "app" not in request.fixturenames:
        return
    app: APIFlask = request.getfixturevalue("app")
    with app.app_context():
        limiter.reset()
        db.session.remove()
        with db.engine.begin() as connection:
            for table in reversed(db.metadata.sorted_tables):
                connection.execute(table.delete())


@pytest.fixture
def make_user(app: APIFlask) -> Callable[..., Account]:
    """Create a user through the service; `make_user(role="admin")`."""

    def make(role: str = "member", email: str | None = None, password: str = PASSWORD) -> Account:
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        with app.app_context():
            user = users.create_user("Test User", email, password, Role(role))
            return Account(user.id, email, password, role)

    return make


@pytest.fixture
def as_user(app: APIFlask) -> Callable[[Account], FlaskClient]:
    """A test client that sends `account`'s fresh access token with every request."""

    def client_for(account: Account) -> FlaskClient:
        client = app.test_client()
        token = login(client, account)["access_token"]
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return client

    return client_for


@pytest.fixture
def anonymous(app: APIFlask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def member(make_user: Callable[..., Account]) -> Account:
    return make_user()


@pytest.fixture
def admin(make_user: Callable[..., Account]) -> Account:
    return make_user(role="admin")


@pytest.fixture
def client(as_user: Callable[[Account], FlaskClient], member: Account) -> FlaskClient:
    """A member's client: the default for tests of resources that need a caller."""
    return as_user(member)


@pytest.fixture
def in_db(app: APIFlask) -> Callable[[Callable[[], Any]], Any]:
    """Run a query in a fresh app context: what the database holds, not what a session cached."""

    def run(query: Callable[[], Any]) -> Any:
        with app.app_context():
            return query()

    return run
