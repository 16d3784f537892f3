"""Item rules tested below HTTP: expected versions, racing writers, reads for reports."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from backoffice.errors import StaleVersion
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


@pytest.mark.parametrize("expects_version", [False, True])
def test_a_write_that_loses_a_race_raises_stale_version_and_keeps_the_winner(
    app, racing_writer, expects_version
):
    with app.app_context():
        item = service.create_item("Raced", quantity=1)
        racing_writer(item.id)
        with pytest.raises(StaleVersion) as raised:
            service.update_item(item.id, {"quantity": 5}, item.version if expects_version else None)
        assert (raised.value.resource, raised.value.resource_id, raised.value.raced) == (
            "item",
            item.id,
            True,
        )
        db.session.remove()
        assert db.session.get(Item, item.id).quantity == 999


def test_an_update_expecting_another_version_raises_stale_version_and_changes_nothing(app):
    with app.app_context():
        item = service.create_item("Moved on", quantity=1)
        service.update_item(item.id, {"quantity": 2})
        with pytest.raises(StaleVersion) as raised:
            service.update_item(item.id, {"quantity": 3}, expected_version=item.version)
        assert not raised.value.raced
        db.session.remove()
        stored = db.session.get(Item, item.id)
        assert (stored.quantity, stored.version) == (2, 2)


def test_a_delete_expecting_another_version_raises_stale_version_and_keeps_the_item(app):
    with app.app_context():
        item = service.create_item("Kept")
        with pytest.raises(StaleVersion):
            service.delete_item(item.id, expected_version=item.version + 1)
        db.session.remove()
        assert db.session.get(Item, item.id) is not None


def test_writes_at_the_expected_version_or_without_one_go_through(app):
    with app.app_context():
        item = service.create_item("Current", quantity=1)
        updated = service.update_item(item.id, {"quantity": 4}, expected_version=1)
        assert (updated.quantity, updated.version) == (4, 2)
        assert service.update_item(item.id, {"quantity": 5}).version == 3
        service.delete_item(item.id, expected_version=3)
        assert db.session.get(Item, item.id) is None


def test_items_in_batches_yields_every_item_once_in_id_order(app):
    with app.app_context():
        created = [service.create_item(f"Item {n}", quantity=n).id for n in range(5)]
        batches = list(service.items_in_batches(2))
        assert [len(batch) for batch in batches] == [2, 2, 1]
        rows = [row for batch in batches for row in batch]
        assert [row.id for row in rows] == sorted(created)
        assert rows[0]._fields == (
            "id",
            "name",
            "description",
            "quantity",
            "created_at",
            "updated_at",
        )
        assert service.count_items() == 5
        assert not db.session.identity_map  # rows, not objects: memory stays flat


def test_items_in_batches_of_nothing_yields_nothing(app):
    with app.app_context():
        assert list(service.items_in_batches(10)) == []
        assert service.count_items() == 0
