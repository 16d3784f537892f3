from __future__ import annotations

import os
import pty
import re
import selectors
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.users.models import User
from tests.support import ROOT, TEST_SECRET_KEY, count_rows, process_environment


def flask(
    args: list[str], database_url: str, tmp_path, stdin: str = "", **settings: str
) -> subprocess.CompletedProcess:
    """A real `flask` command on the test's database, `stdin` piped in (not a terminal),
    with the commands of Flask's plugins too (`flask limiter`)."""
    env = process_environment(
        APP_ENV="testing",
        SECRET_KEY=TEST_SECRET_KEY,
        DATABASE_URL=database_url,
        INSTANCE_PATH=str(tmp_path),
        **settings,
    )
    return subprocess.run(  # noqa: S603 (our own command)
        [sys.executable, "-m", "flask", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
    )


def the_error_line(output: str) -> str:
    """The one line that says what is wrong (Click adds its usage lines to a usage error):
    never a traceback, never two errors."""
    assert "Traceback" not in output, output
    [line] = [line for line in output.splitlines() if line.startswith("Error:")]
    return line


def test_seed_adds_items_in_batches(app, in_db):
    result = app.test_cli_runner().invoke(args=["seed", "--items", "23", "--batch", "10"])
    assert result.exit_code == 0, result.output
    assert "Added 23 items." in result.output
    assert in_db(lambda: count_rows(Item)) == 23
    names = in_db(lambda: set(db.session.scalars(select(Item.name))))
    assert len(names) == 23


def test_users_create_reads_the_password_from_stdin_never_argv(app, in_db):
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--email", "root@example.com", "--name", "Root", "--admin"],
        input="a long admin password\na long admin password\n",
    )
    assert result.exit_code == 0, result.output
    user = in_db(lambda: db.session.scalars(select(User)).one())
    assert (user.email, user.role) == ("root@example.com", "admin")
    assert user.password_hash.startswith("$argon2id$")


def test_users_create_refuses_bad_input_and_duplicates(app, make_user):
    runner = app.test_cli_runner()
    short = runner.invoke(
        args=["users", "create", "--email", "a@example.com", "--name", "A"], input="short\nshort\n"
    )
    assert short.exit_code != 0
    assert "password" in short.output
    existing = make_user()
    duplicate = runner.invoke(
        args=["users", "create", "--email", existing.email, "--name", "B"],
        input="long enough pw\nlong enough pw\n",
    )
    assert duplicate.exit_code != 0
    assert "already exists" in duplicate.output


def test_bootstrap_admin_creates_the_first_admin_once(app, in_db, monkeypatch):
    monkeypatch.setenv("ADMIN_EMAIL", "boss@example.com")
    monkeypatch.setenv("ADMIN_PASSWORD", "boss password 1")
    runner = app.test_cli_runner()
    first = runner.invoke(args=["users", "bootstrap-admin"])
    assert "Created admin boss@example.com" in first.output
    second = runner.invoke(args=["users", "bootstrap-admin"])
    assert "An admin exists already" in second.output
    admins = in_db(lambda: db.session.scalars(select(User).where(User.role == "admin")).all())
    assert [admin.email for admin in admins] == ["boss@example.com"]


def test_bootstrap_admin_without_settings_does_nothing(app, in_db, monkeypatch):
    monkeypatch.delenv("ADMIN_EMAIL", raising=False)
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    result = app.test_cli_runner().invoke(args=["users", "bootstrap-admin"])
    assert result.exit_code == 0
    assert in_db(lambda: db.session.scalars(select(User)).all()) == []


def test_bootstrap_admin_with_only_an_email_refuses_and_creates_nobody(app, in_db, monkeypatch):
    monkeypatch.setenv("ADMIN_EMAIL", "boss@example.com")
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    result = app.test_cli_runner().invoke(args=["users", "bootstrap-admin"])
    assert result.exit_code != 0
    assert result.output.strip() == (
        "Error: ADMIN_EMAIL is set but ADMIN_PASSWORD is not: set both, or neither"
    )
    assert in_db(lambda: db.session.scalars(select(User)).all()) == []


@pytest.mark.parametrize(
    ("option", "value"),
    [("--items", "-5"), ("--items", "0"), ("--batch", "0"), ("--batch", "-1"), ("--batch", "x")],
)
def test_seed_refuses_a_count_or_batch_out_of_range_and_adds_nothing(app, in_db, option, value):
    result = app.test_cli_runner().invoke(args=["seed", option, value])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert the_error_line(result.output).startswith(f"Error: Invalid value for '{option}': ")
    assert "Added" not in result.output
    assert in_db(lambda: count_rows(Item)) == 0


def test_users_create_takes_a_password_piped_on_one_line(app, database_url, tmp_path, anonymous):
    """A script pipes the password once (`printf '%s\\n' "$PASSWORD" | flask users create
    ...`): there is no one to confirm it, so it is read once, and never echoed."""
    args = ["users", "create", "--email", "ops@example.com", "--name", "Ops", "--admin"]
    created = flask(args, database_url, tmp_path, stdin="a long admin password\n")
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(r"Created admin ops@example\.com \([0-9a-f-]{36}\)\.\n", created.stdout)
    assert created.stderr == ""
    login = {"email": "ops@example.com", "password": "a long admin password"}
    assert anonymous.post("/api/auth/token", json=login).status_code == 200


def test_users_create_at_a_terminal_asks_twice_without_echo(app, database_url, tmp_path, in_db):
    """At a terminal (a pseudo-terminal here: the command's session has it as stdin and no
    other) the password is asked for, not echoed, and asked again to confirm."""
    main, terminal = pty.openpty()
    env = process_environment(
        APP_ENV="testing",
        SECRET_KEY=TEST_SECRET_KEY,
        DATABASE_URL=database_url,
        INSTANCE_PATH=str(tmp_path),
    )
    args = ["users", "create", "--email", "tty@example.com", "--name", "Tty"]
    command = subprocess.Popen(  # noqa: S603 (our own command)
        [sys.executable, "-m", "flask", *args],
        cwd=ROOT,
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,  # no controlling terminal but this one: getpass reads stdin
    )
    os.close(terminal)
    seen = b""
    waiting = selectors.DefaultSelector()
    waiting.register(main, selectors.EVENT_READ)

    def answer_when(prompt: bytes, typed: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 90
        while prompt not in seen:
            ready = waiting.select(max(0.0, deadline - time.monotonic()))
            assert ready, f"no {prompt!r} in 90 s; the terminal shows {seen!r}"
            seen += os.read(main, 1024)
        os.write(main, typed)

    try:
        answer_when(b"Password: ", b"a terminal password\n")
        answer_when(b"Repeat for confirmation: ", b"a terminal password\n")
        assert command.wait(timeout=90) == 0, seen
    finally:
        command.kill()
        command.wait()
        waiting.close()
        os.close(main)
    assert b"a terminal password" not in seen  # never echoed
    emails = in_db(lambda: db.session.scalars(select(User.email)).all())
    assert emails == ["tty@example.com"]


@pytest.mark.parametrize(
    ("stdin", "error"),
    [
        ("", "Error: No password on stdin: pipe it as one line, or run this at a terminal."),
        ("\n", "Error: Invalid value: password: String should have at least 8 characters"),
        ("short\n", "Error: Invalid value: password: String should have at least 8 characters"),
    ],
)
def test_users_create_refuses_a_missing_or_bad_piped_password_in_one_line(
    app, database_url, tmp_path, in_db, stdin, error
):
    args = ["users", "create", "--email", "ops@example.com", "--name", "Ops"]
    refused = flask(args, database_url, tmp_path, stdin=stdin)
    assert refused.returncode in {1, 2}
    assert "Aborted" not in refused.stderr
    assert the_error_line(refused.stdout + refused.stderr) == error
    assert in_db(lambda: db.session.scalars(select(User)).all()) == []


def test_users_create_takes_no_password_argument(app, in_db):
    """On the command line it would stay in the shell's history and show in `ps`."""
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--email", "a@example.com", "--name", "A", "--password", "x" * 20],
        input="a long enough password\n",
    )
    assert result.exit_code == 2
    assert the_error_line(result.output) == "Error: No such option '--password'."
    assert in_db(lambda: db.session.scalars(select(User)).all()) == []


def test_limiter_config_shows_the_database_storage(app, database_url, tmp_path):
    """Flask-Limiter's own `flask limiter config` renders every storage's backend."""
    shown = flask(["limiter", "config"], database_url, tmp_path, COLUMNS="200")
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr
    assert "DatabaseStorage" in shown.stdout  # (the URI is a setting: it shows "N/A")
    assert "Engine(" in shown.stdout  # the backend: the app's own database
    assert "OK" in shown.stdout  # its health check answered
