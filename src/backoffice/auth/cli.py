"""`flask auth`: tokens and API keys from the command line."""

from __future__ import annotations

import click
import redis
from flask import current_app
from flask.cli import AppGroup

from backoffice.auth import revocations
from backoffice.auth.service import FAMILY_MARGIN

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
