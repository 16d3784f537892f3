"""A configuration the service refuses stops every entry point with one line naming the
variable and a non-zero exit, never a traceback (`backoffice.startup`); a server stops
before it forks workers, rather than respawning them as each fails on it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT, process_environment

#: What a newcomer or an operator gets wrong, and the variable the one line must name.
BAD_SETTINGS = {
    "SECRET_KEY": {"APP_ENV": "production", "DATABASE_URL": "postgresql://app@db/app"},
    "DATABASE_URL": {"DATABASE_URL": "not a database"},
    "ADMIN_PASSWORD": {"ADMIN_EMAIL": "admin@example.com"},
    "MAX_CONTENT_LENGTH": {"MAX_CONTENT_LENGTH": "lots"},
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
