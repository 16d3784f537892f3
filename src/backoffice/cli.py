"""`flask` commands beyond Flask's own and Flask-Migrate's `flask db`."""

from __future__ import annotations

import os
import sys

import click
import redis
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from pydantic import ValidationError
from sqlalchemy import insert

from backoffice import housekeeping
from backoffice.auth import revocations
from backoffice.auth.service import FAMILY_MARGIN
from backoffice.config import ConfigError, admin_credentials
from backoffice.database import new_id, utcnow
from backoffice.errors import APIError
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.users import service as users
from backoffice.users.models import Role
from backoffice.users.schemas import UserIn

#: The most rows `flask seed` holds in memory and sends in one INSERT.
MAX_SEED_BATCH = 100_000


@click.command("seed")
@click.option(
    "--items",
    "count",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="How many items to add.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, MAX_SEED_BATCH),
    default=5000,
    show_default=True,
    help="Rows per INSERT (and per commit).",
)
@with_appcontext
def seed_command(count: int, batch: int) -> None:
    """Add demo inventory items, in batches, with a progress bar."""
    with click.progressbar(length=count, label="Seeding items") as bar:
        done = 0
        while done < count:
            size = min(batch, count - done)
            now = utcnow()
            rows = [
                {
                    "id": new_id(),
                    "name": f"Demo item {done + n + 1}",
                    "description": "Seeded demo data",
                    "quantity": (done + n) % 500,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(size)
            ]
            db.session.execute(insert(Item), rows)
            db.session.commit()
            done += size
            bar.update(size)
    click.echo(f"Added {count} items.")


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@with_appcontext
def prune_command(dry_run: bool) -> None:
    """Delete what retention says has expired, once (what the workers do on a schedule)."""
    if dry_run:
        for table, count in housekeeping.count_expired().items():
            click.echo(f"{table}: {count} would be deleted")
        return
    deleted = housekeeping.prune()
    if deleted is None:
        raise click.ClickException("Another pruner (a worker) is running; nothing was done.")
    for table, count in deleted.items():
        click.echo(f"{table}: {count} deleted")


users_cli = AppGroup("users", help="Manage users.")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--admin", is_flag=True, help="Make the user an admin.")
def create_user_command(email: str, name: str, admin: bool) -> None:
    """Create a user. The password is asked for twice at a terminal, or read once from
    stdin when it is piped (the first line); it is never an argument."""
    try:
        checked = UserIn(name=name, email=email, password=_new_password())
    except ValidationError as error:
        raise click.BadParameter(_describe(error)) from None
    try:
        user = users.create_user(
            checked.name, checked.email, checked.password, Role.ADMIN if admin else Role.MEMBER
        )
    except APIError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"Created {user.role} {user.email} ({user.id}).")


@users_cli.command("bootstrap-admin")
def bootstrap_admin_command() -> None:
    """Create the first admin from ADMIN_EMAIL and ADMIN_PASSWORD, if there is no admin yet."""
    try:
        credentials = admin_credentials(os.environ)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if credentials is None:
        click.echo("ADMIN_EMAIL and ADMIN_PASSWORD not set: no admin created.")
        return
    email, password = credentials
    try:
        checked = UserIn(name="Administrator", email=email, password=password)
    except ValidationError as error:
        raise click.ClickException(f"ADMIN_EMAIL/ADMIN_PASSWORD: {_describe(error)}") from None
    user = users.ensure_admin(checked.email, checked.password, checked.name)
    click.echo(f"Created admin {user.email}." if user else "An admin exists already.")


auth_cli = AppGroup("auth", help="Tokens and API keys.")


@auth_cli.command("import-revocations")
@click.argument("redis_url")
def import_revocations_command(redis_url: str) -> None:
    """Copy the revoked tokens an earlier version kept in Redis (at what was its REDIS_URL)
    into the database. Run it once the last process of that version has stopped (again
    is harmless); until then, sessions it ended in Redis are not ended here."""
    config = current_app.config
    longest = max(config["JWT_ACCESS_TOKEN_EXPIRES"], config["JWT_REFRESH_TOKEN_EXPIRES"])
    try:
        held, added = revocations.import_from_redis(redis_url, longest + FAMILY_MARGIN)
    except redis.exceptions.RedisError as error:
        # Never the URL: it may hold a password.
        raise click.ClickException(f"Redis did not answer ({type(error).__name__}).") from None
    click.echo(f"Redis held {held} revocations; {added} were new to the database.")


def _new_password() -> str:
    """Never from argv, where the shell's history and `ps` would keep it. At a terminal:
    asked twice, not echoed. Piped (`printf '%s\\n' "$PASSWORD" | flask users create ...`):
    the first line of stdin, read once, as no one is there to type it again."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return str(password)
    line = sys.stdin.readline()
    if not line:
        raise click.ClickException(
            "No password on stdin: pipe it as one line, or run this at a terminal."
        )
    return line.removesuffix("\n").removesuffix("\r")


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())


def register_commands(app: Flask) -> None:
    app.cli.add_command(seed_command)
    app.cli.add_command(prune_command)
    app.cli.add_command(users_cli)
    app.cli.add_command(auth_cli)
