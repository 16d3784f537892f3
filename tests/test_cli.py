from __future__ import annotations

from sqlalchemy import select

from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.users.models import User
from tests.support import count_rows


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
