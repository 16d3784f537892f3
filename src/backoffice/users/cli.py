"""`flask users`: people from the command line."""

from __future__ import annotations

import os
import sys

import click
from flask.cli import AppGroup
from pydantic import ValidationError

from backoffice.config import ConfigError, admin_credentials
from backoffice.errors import APIError
from backoffice.users import service as users
from backoffice.users.models import Role
from backoffice.users.schemas import UserIn

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
