from __future__ import annotations

from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.items.models import Item


def test_seed_adds_items_in_batches(app, in_db):
    result = app.test_cli_runner().invoke(args=["seed", "--items", "23", "--batch", "10"])
    assert result.exit_code == 0, result.output
    assert "Added 23 items." in result.output
    assert in_db(lambda: db.session.scalar(select(func.count()).select_from(Item))) == 23
    names = in_db(lambda: set(db.session.scalars(select(Item.name))))
    assert len(names) == 23
