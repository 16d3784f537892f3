"""Item rules tested below HTTP: what happens when two writers race."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session
from werkzeug.datastructures import ETags

from backoffice.errors import Conflict, PreconditionFailed
from backoffice.extensions import db
from backoffice.items import service
from backoffice.items.models import Item


@pytest.fixture
def racing_writer(app):
    """Just before our flush, another connection commits a change to the same row."""

    def arm(item_id: uuid.UUID) -> None:
        def interfere(session: Session, *_: object) -> None:
            with db.engine.begin() as other:
                other.execute(
                    update(Item)
                    .where(Item.id == item_id)
                    .values(quantity=999, version=Item.version + 1)
                )

        event.listen(db.session.registry(), "before_flush", interfere, once=True)

    return arm


@pytest.mark.parametrize(("if_match", "error"), [(False, Conflict), (True, PreconditionFailed)])
def test_a_write_that_loses_a_race_is_refused_and_keeps_the_winner(
    app, racing_writer, if_match, error
):
    with app.app_context():
        item = service.create_item("Raced", quantity=1)
        item_id, tags = item.id, ETags([service.etag(item)]) if if_match else ETags()
        racing_writer(item_id)
        with pytest.raises(error):
            service.update_item(item_id, {"quantity": 5}, tags)
        db.session.remove()
        assert db.session.get(Item, item_id).quantity == 999
