"""The order benchmark: one-line orders on a seeded catalogue, checked for oversells after.

The catalogue is `CATALOGUE` items of `UNITS` units each; post_order.lua orders one unit
of a random one per request (the ids come from a file, BENCH_ORDER_ITEMS). After the run
`oversold()` counts the items whose stock went negative or does not match the units the
orders hold: it must be 0.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import func, insert, select

from backoffice import create_app
from backoffice.config import load_settings
from backoffice.database import new_id, utcnow
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.orders.models import OrderLine

CATALOGUE = 100
UNITS = 1_000_000


def prepare(env: Mapping[str, str], directory: Path) -> list[str]:
    """Seed the catalogue and point post_order.lua at its ids; the ids."""
    app = create_app(load_settings(env))
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "name": f"Catalogue {n}",
            "description": None,
            "quantity": UNITS,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(CATALOGUE)
    ]
    with app.app_context():
        db.session.execute(insert(Item), rows)
        db.session.commit()
        db.engine.dispose()
    ids = [str(row["id"]) for row in rows]
    path = directory / "order-items.txt"
    path.write_text("\n".join(ids) + "\n")
    os.environ["BENCH_ORDER_ITEMS"] = str(path)
    return ids


def oversold(env: Mapping[str, str], item_ids: list[str]) -> int:
    """Catalogue items whose shelf is below zero, or whose shelf plus the units orders
    hold is not the `UNITS` they started with. 0 when nothing was oversold."""
    app = create_app(load_settings(env))
    catalogue = [uuid.UUID(item_id) for item_id in item_ids]
    with app.app_context():
        held = {
            row.item_id: int(row.units)
            for row in db.session.execute(
                select(OrderLine.item_id, func.sum(OrderLine.quantity).label("units"))
                .where(OrderLine.item_id.in_(catalogue))
                .group_by(OrderLine.item_id)
            )
        }
        shelf = {
            row.id: row.quantity
            for row in db.session.execute(
                select(Item.id, Item.quantity).where(Item.id.in_(catalogue))
            )
        }
        db.engine.dispose()
    return sum(
        1
        for item_id in catalogue
        if item_id not in shelf
        or shelf[item_id] < 0
        or shelf[item_id] + held.get(item_id, 0) != UNITS
    )
