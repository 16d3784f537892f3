"""The suite needs a PostgreSQL server, not a database: it creates its own from the URL,
and a server it cannot use is one line at the start of the run, never an error per test.

Each case runs pytest in a subprocess with its own TEST_DATABASE_URL, on the tiny test
below (which the parent run also runs, on every backend, as any other test).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from backoffice.config import normalize_database_url
from tests.postgres_server import maintenance_url
from tests.support import ROOT, free_port

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_NAMESPACE = os.environ.get("TEST_NAMESPACE", "")
PLANTED_PASSWORD = "planted-password-never-printed"

needs_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL and os.environ.get("CI") != "true",
    reason="TEST_DATABASE_URL is not set (under CI=true this fails instead)",
)


def test_the_app_answers_readiness(client):
    """The tiny test the subprocess runs: the app, its migrated database, a user created
    and logged in, one request."""
    response = client.get("/api/health")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["checks"]["database"] == "ok"


def _server() -> URL:
    assert TEST_DATABASE_URL, "TEST_DATABASE_URL must be set (CI=true)"
    return make_url(normalize_database_url(TEST_DATABASE_URL))


def _run_suite(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """pytest on the tiny test, PostgreSQL backend only, with this TEST_DATABASE_URL and
    a namespace of its own (the parent's databases stay the parent's)."""
    env = {
        **os.environ,
        "TEST_DATABASE_URL": database_url,
        "TEST_NAMESPACE": f"{TEST_NAMESPACE}sub_{uuid.uuid4().hex[:6]}_",
        "TEST_REDIS_URL": "",  # the embedded broker: only the database is under test
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    return subprocess.run(  # noqa: S603 (our own test suite)
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            f"{__file__}::test_the_app_answers_readiness",
            "-k",
            "postgresql",
            *arguments,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _databases(prefix: str) -> set[str]:
    engine = create_engine(maintenance_url(str(TEST_DATABASE_URL)), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        names = connection.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"),
            {"prefix": f"{prefix}%"},
        ).scalars()
        found = set(names)
    engine.dispose()
    return found


@needs_postgres
def test_a_url_naming_a_missing_database_still_runs_the_suite():
    missing = f"backoffice_missing_{uuid.uuid4().hex[:8]}"
    url = _server().set(database=missing).render_as_string(hide_password=False)

    result = _run_suite(url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "does not answer" not in result.stdout + result.stderr
    assert missing not in _databases(missing)  # used as a server, never created itself


def test_an_unreachable_server_is_one_line_and_a_failed_run():
    port = free_port()
    url = f"postgresql+psycopg://postgres:{PLANTED_PASSWORD}@127.0.0.1:{port}/test"

    result = _run_suite(url, "-n", "2")

    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    lines = [line for line in output.splitlines() if "TEST_DATABASE_URL" in line]
    assert len(lines) == 1, output
    assert f"postgresql+psycopg://postgres:***@127.0.0.1:{port}/test" in lines[0]
    assert "PostgreSQL does not answer" in lines[0]
    assert "refused" in lines[0].lower()
    assert PLANTED_PASSWORD not in output
    assert "passed" not in output
    assert "error" not in output.replace(lines[0], "").lower()  # no per-test errors


@pytest.fixture
def role_without_createdb() -> Iterator[str]:
    """A login role of this run's own that may not create databases, dropped afterwards."""
    name = f"backoffice_test_{TEST_NAMESPACE}nocreate_{uuid.uuid4().hex[:6]}"
    engine = create_engine(maintenance_url(str(TEST_DATABASE_URL)), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(
            text(f"CREATE ROLE \"{name}\" LOGIN NOCREATEDB PASSWORD '{PLANTED_PASSWORD}'")
        )
    yield name
    with engine.connect() as connection:
        connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
    engine.dispose()


@needs_postgres
def test_a_role_that_may_not_create_databases_is_one_line_and_a_failed_run(
    role_without_createdb,
):
    url = (
        _server()
        .set(username=role_without_createdb, password=PLANTED_PASSWORD)
        .render_as_string(hide_password=False)
    )

    result = _run_suite(url)

    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    lines = [line for line in output.splitlines() if "TEST_DATABASE_URL" in line]
    assert len(lines) == 1, output
    assert f"role '{role_without_createdb}' may not create databases" in lines[0]
    assert PLANTED_PASSWORD not in output
    assert "passed" not in output
