"""`flask seed`: demo inventory, in bulk; or, with `--demo`, a small demo back office
(`backoffice.demo`)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import insert

from backoffice.database import new_id, utcnow
from backoffice.demo import service as demo_data
from backoffice.extensions import db
from backoffice.items.models import Item

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
@click.option(
    "--demo",
    is_flag=True,
    help="Instead: demo people, items, orders in every status, todos, jobs and webhook "
    "events, once (a second run adds nothing).",
)
@click.option(
    "--allow-production",
    is_flag=True,
    help="Let --demo run with APP_ENV=production (its passwords are then random).",
)
@with_appcontext
def seed_command(count: int, batch: int, demo: bool, allow_production: bool) -> None:
    """Add demo inventory items, in batches, with a progress bar; or, with --demo, a
    small demo back office."""
    if demo:
        _seed_demo(allow_production)
        return
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


def _seed_demo(allow_production: bool) -> None:
    production = current_app.config.get("APP_ENV") == "production"
    if production and not allow_production:
        raise click.ClickException(
            "APP_ENV is production: demo data (and its accounts) do not belong there. "
            "Add --allow-production if this really is a demo deployment."
        )
    if demo_data.already_seeded():
        click.echo(f"Already seeded ({demo_data.ADMIN.email} exists): nothing added.")
        return
    try:
        seeded = demo_data.seed_demo(random_passwords=production)
    except demo_data.DemoRefused as error:
        raise click.ClickException(f"Demo data not seeded: {error}") from None
    click.echo("Demo accounts (the passwords are shown this once):")
    for user, password in seeded.accounts:
        click.echo(f"  {user.role:<6} {user.email:<24} {password}")
    for kind, counts in seeded.counts.items():
        by_status = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        click.echo(f"{kind}: {by_status}")
