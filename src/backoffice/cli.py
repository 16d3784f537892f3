"""`flask` commands beyond Flask's own and Flask-Migrate's `flask db`: retention's here,
and each capability's from its own `cli.py` (`flask seed`, `flask users`, `flask auth`)."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from backoffice import housekeeping


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


def register_commands(app: Flask, *commands: click.Command) -> None:
    """`flask prune`, and the commands each capability brings (from `create_app()`)."""
    app.cli.add_command(prune_command)
    for command in commands:
        app.cli.add_command(command)
