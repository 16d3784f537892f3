"""Answers written from rows (`backoffice.output`) are the bytes the output schema writes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import update

from backoffice.extensions import db
from backoffice.items import service
from backoffice.items.schemas import ItemOut
from backoffice.output import fields_of, json_answer


@pytest.mark.parametrize(
    ("description", "created_at"),
    [
        (None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # no microseconds: none written
        ('über ✓ "quoted"', datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC)),
    ],
)
def test_a_row_is_written_as_the_schema_writes_it(app, description, created_at):
    with app.app_context():
        created = service.create_item("Widget", description=description, quantity=3)
        db.session.execute(
            update(service.ITEMS)
            .where(service.ITEMS.c.id == created.id)
            .values(created_at=created_at)
        )
        db.session.commit()
        row = service.get_item(created.id)
        from_row = json_answer(fields_of(row, ItemOut)).get_data()
    by_schema = orjson.dumps(ItemOut.model_validate(row).model_dump(mode="json"))
    assert from_row == by_schema
    assert orjson.loads(from_row)["created_at"] == created_at.isoformat()
    assert "version" not in orjson.loads(from_row)  # a column the schema does not show


def test_an_answer_carries_its_status_headers_and_json_type(app):
    with app.test_request_context():
        answer = json_answer({"a": 1}, 201, {"Location": "/x"})
    assert (answer.status_code, answer.mimetype, answer.headers["Location"]) == (
        201,
        "application/json",
        "/x",
    )
    assert orjson.loads(answer.get_data()) == {"a": 1}
