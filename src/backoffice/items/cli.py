"""`flask seed`: demo inventory."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import insert

from backoffice.database import new_id, utcnow
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
