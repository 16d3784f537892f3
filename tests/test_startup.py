"""A configuration the service refuses stops every entry point with one line naming the
variable and a non-zero exit, never a traceback (`backoffice.startup`); a server stops
before it forks workers, rather than respawning them as each fails on it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backoffice import lanes, startup
from tests.support import (
    ROOT,
    deployed,
    free_port,
    process_environment,
    workers_started,
)

#: What a newcomer or an operator gets wrong, and the variable the one line must name.
BAD_SETTINGS = {
    "SECRET_KEY": {"APP_ENV": "production", "DATABASE_URL": "postgresql://app@db/app"},
    "DATABASE_URL": {"DATABASE_URL": "not a database"},
    "ADMIN_PASSWORD": {"ADMIN_EMAIL": "admin@example.com"},
    "MAX_CONTENT_LENGTH": {"MAX_CONTENT_LENGTH": "lots"},
    # Checked as its queue is registered (`work.register`), late in `create_app()`.
    "JOB_LEASE_SECONDS": {"JOB_LEASE_SECONDS": "0"},
    # No longer read (revoked tokens live in the database): said, not silently ignored.
    "REDIS_URL": {"REDIS_URL": "redis://127.0.0.1:6379/0"},
}
#: Long enough for a slow machine to import the app, far too short for a respawn loop
#: to give up on its own.
DEADLINE = 90


def run(command: list[str], settings: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    env = process_environment(INSTANCE_PATH=str(tmp_path), PORT="1", **settings)
    return subprocess.run(  # noqa: S603 (our own entry points)
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=DEADLINE
    )


def assert_one_line_naming(answer: subprocess.CompletedProcess, variable: str) -> None:
    output = answer.stdout + answer.stderr
    assert answer.returncode == 2, output
    assert "Traceback" not in output
    [line] = output.splitlines()
    assert line.startswith("configuration error: ")
    assert variable in line


@pytest.mark.parametrize("variable", BAD_SETTINGS)
def test_flask_commands_refuse_a_bad_configuration_in_one_line(variable, tmp_path):
    answer = run(
        [sys.executable, "-m", "flask", "users", "bootstrap-admin"],
        BAD_SETTINGS[variable],
        tmp_path,
    )
    assert_one_line_naming(answer, variable)


def test_the_worker_refuses_a_bad_configuration_in_one_line(tmp_path):
    answer = run(
        [sys.executable, "-m", "celery", "-A", "backoffice.worker", "worker", "--pool", "solo"],
        BAD_SETTINGS["SECRET_KEY"],
        tmp_path,
    )
    assert_one_line_naming(answer, "SECRET_KEY")


@pytest.mark.parametrize("variable", ["SECRET_KEY", "DATABASE_URL"])
def test_deploy_serve_stops_before_forking_instead_of_respawning_workers(variable, tmp_path):
    answer = run([str(ROOT / "deploy" / "serve")], BAD_SETTINGS[variable], tmp_path)
    assert_one_line_naming(answer, variable)  # and Granian never started: no line of its own


def test_gunicorn_stops_before_forking_too(tmp_path):
    answer = run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
        BAD_SETTINGS["SECRET_KEY"],
        tmp_path,
    )
    assert answer.returncode == 2
    assert "Traceback" not in answer.stderr
    refusals = [line for line in answer.stderr.splitlines() if "configuration error" in line]
    assert len(refusals) == 1
    assert "SECRET_KEY" in refusals[0]


def test_bootstrap_admin_with_both_settings_still_works(tmp_path):
    env = {"ADMIN_EMAIL": "boss@example.com", "ADMIN_PASSWORD": "boss password 1"}
    migrated = run([sys.executable, "-m", "flask", "db", "upgrade"], env, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    created = run([sys.executable, "-m", "flask", "users", "bootstrap-admin"], env, tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "Created admin boss@example.com."


# --- the metrics directory (PROMETHEUS_MULTIPROC_DIR) ---------------------------------


def tables_in(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_a_missing_metrics_directory_is_made_by_the_first_flask_command(tmp_path):
    """A fresh checkout's first `flask db upgrade` with the variable set as deploy/serve
    sets it, before anything made the directory: made (one level), and the upgrade runs."""
    directory = tmp_path / "prometheus"
    settings = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    migrated = run([sys.executable, "-m", "flask", "db", "upgrade"], settings, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "Traceback" not in migrated.stderr
    assert directory.is_dir()
    assert {"alembic_version", "users", "items"} <= tables_in(tmp_path / "backoffice.db")


#: Directories no process could write its metric files to, and what each entry point runs.
UNUSABLE_DIRECTORIES = {
    "parent-missing": lambda tmp_path: tmp_path / "no-such-parent" / "prometheus",
    "a-file": lambda tmp_path: tmp_path / "backoffice.db",
}
ENTRY_POINTS = {
    "flask": [sys.executable, "-m", "flask", "db", "upgrade"],
    "worker": [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "backoffice.worker",
        "worker",
        "--pool",
        "solo",
    ],
    "server-check": [sys.executable, "-m", "backoffice.startup"],
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("unusable", UNUSABLE_DIRECTORIES)
def test_an_unusable_metrics_directory_is_refused_in_one_line(entry_point, unusable, tmp_path):
    """Not a traceback from prometheus-client's first metric file, nor a tree of
    directories made for a mistyped path: one line, exit 2, nothing migrated."""
    directory = UNUSABLE_DIRECTORIES[unusable](tmp_path)
    if unusable == "a-file":
        directory.write_bytes(b"")
    settings = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    answer = run(ENTRY_POINTS[entry_point], settings, tmp_path)
    assert_one_line_naming(answer, "PROMETHEUS_MULTIPROC_DIR")
    assert str(directory) in answer.stderr
    assert not (tmp_path / "no-such-parent").exists()
    assert tables_in(tmp_path / "backoffice.db") == set()


# --- one import per start: Granian's workers forked from the checked process -------------


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_deploy_serve_forks_its_workers_from_the_process_that_imported_and_checked(tmp_path):
    """A start pays for the app's imports once: Granian runs in the process that checked
    the configuration, and its workers are forked from it (a spawned worker would run
    `python -c "from multiprocessing.spawn import ..."` and import everything again)."""
    port = free_port()
    env = process_environment(INSTANCE_PATH=str(tmp_path), PORT=str(port))
    log = tmp_path / "serve.log"
    with deployed(env, port, log) as server:
        assert workers_started(log) == 2, log.read_text()
        serving = cmdline(server.pid)
        assert serving[1:] == ["-m", "backoffice.startup", "serve", "backoffice.rsgi:app"]
        workers = children_of(server.pid)
        assert len(workers) == 2, (workers, log.read_text())
        assert all(cmdline(worker) == serving for worker in workers)
        # The serving process has the app's modules (their compiled parts) loaded.
        assert "pydantic_core" in Path(f"/proc/{server.pid}/maps").read_text()


CHECK_APART = """
import sys, threading
from backoffice.startup import checked_apart
status = checked_apart()
print(status, threading.active_count(), "backoffice.rsgi" in sys.modules)
"""


@pytest.mark.parametrize(
    ("settings", "printed"),
    [({}, "0 1 False"), (BAD_SETTINGS["JOB_LEASE_SECONDS"], "2 1 False")],
)
def test_the_check_builds_the_app_in_a_child_and_leaves_the_serving_process_bare(
    settings, printed, tmp_path
):
    """The serving process learns the check's verdict (the child's exit status, its one
    line on stderr) and holds no app: no thread, connection or SDK client of one for the
    workers it forks to inherit."""
    answer = run([sys.executable, "-c", CHECK_APART], settings, tmp_path)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == printed
    if settings:
        assert_one_line_naming(
            subprocess.CompletedProcess([], 2, "", answer.stderr), "JOB_LEASE_SECONDS"
        )
    else:
        assert answer.stderr == ""


#: What no server or worker process uses, so never imports: Flask-Migrate with Alembic,
#: Mako and Pygments (`flask db` and the migration functions import them when called),
#: Sentry's SDK (only with SENTRY_DSN), our tracing (only with an OTLP endpoint).
NOT_FOR_SERVING = ("flask_migrate", "alembic", "mako", "sentry_sdk", "backoffice.tracing")
IMPORTED = """
import sys, {module}
print(" ".join(name for name in {names!r} if name in sys.modules))
"""


@pytest.mark.parametrize("module", ["backoffice.rsgi", "backoffice.wsgi", "backoffice.worker"])
def test_a_server_or_worker_process_imports_nothing_it_never_uses(module, tmp_path):
    """Every module imported costs every start (a restart under load waits for it)."""
    code = IMPORTED.format(module=module, names=NOT_FOR_SERVING)
    answer = run([sys.executable, "-c", code], {}, tmp_path)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == []


def test_the_check_fails_once_when_a_login_lane_endpoint_is_gone(monkeypatch, tmp_path):
    """A login endpoint renamed without `lanes` knowing stops `deploy/serve` at its check,
    rather than failing in every worker Granian respawns."""
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setattr(lanes, "LOGIN_ENDPOINTS", frozenset({"auth.token", "auth.renamed"}))
    with pytest.raises(LookupError, match=r"auth\.renamed"):
        startup.main()
