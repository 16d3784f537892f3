"""Prepared statements: on PostgreSQL they run straight on the driver's connection, and
must give what SQLAlchemy gives, store what it stores, fail as it fails, and leave the pool
as they found it."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select
from sqlalchemy import exc as sa_exc

from backoffice.auth import service as auth_service
from backoffice.database import autocommit
from backoffice.extensions import db
from backoffice.items import service as items_service
from backoffice.prepared import is_prepared, plan, prepared
from backoffice.readonly import read_row, read_rows
from backoffice.todos import service as todos_service
from backoffice.transactions import write_alone, write_one
from backoffice.webhooks import service as webhooks_service

on_postgresql_only = pytest.mark.parametrize(
    "database_url",
    ["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [],
    indirect=True,
)


def through_sqlalchemy(statement, parameters):
    with autocommit(db.engine).connect() as connection:
        return connection.execute(statement, parameters).all()


def assert_same_rows(statement, parameters):
    """The driver's rows equal SQLAlchemy's: the same columns, values and types."""
    assert plan(statement, db.engine, frozenset(parameters)) is not None, (
        "the statement is not run on the driver"
    )
    fast = read_rows(statement, parameters)
    slow = through_sqlalchemy(statement, parameters)
    assert fast, "compare on rows, not on nothing"
    assert [row._asdict() for row in fast] == [row._asdict() for row in slow]
    for ours, theirs in zip(fast, slow, strict=True):
        assert [type(value) for value in ours] == [type(value) for value in theirs]
    first = read_row(statement, parameters)
    assert first is not None
    assert first._asdict() == slow[0]._asdict()


@on_postgresql_only
def test_every_prepared_read_gives_what_sqlalchemy_gives(app, client, member):
    created = client.post("/api/items", json={"name": "Prepared", "quantity": 3}).json
    todo = client.post("/api/todos", json={"task": "Compare"}).json
    key = client.post("/api/auth/api-keys", json={"name": "k", "scopes": ["items"]}).json
    with app.app_context():
        item_id = uuid.UUID(created["id"])
        assert_same_rows(items_service.ITEM_BY_ID, {"item_id": item_id})
        page = items_service.list_items(25, None)
        assert item_id in [row.id for row in page.data]
        assert_same_rows(
            todos_service.TODO_BY_OWNER_AND_ID,
            {"todo_id": uuid.UUID(todo["id"]), "user_id": member.id},
        )
        jti = str(uuid.uuid4())
        assert_same_rows(
            auth_service.TOKEN_STATE, {"user_id": member.id, "jti": jti, "family": jti}
        )
        assert_same_rows(auth_service.KEY_BY_PREFIX, {"prefix": key["prefix"]})
        row = read_row(items_service.ITEM_BY_ID, {"item_id": item_id})
    assert row.created_at.tzinfo is not None
    assert row.created_at.utcoffset().total_seconds() == 0
    assert row.name == "Prepared"
    assert row.quantity == 3


@on_postgresql_only
def test_a_page_of_a_prepared_query_is_prepared_and_a_filtered_one_is_not(app, client):
    for number in range(3):
        client.post("/api/items", json={"name": f"Paged {number}"})
    with app.app_context():
        first = items_service.list_items(2, None)
        assert len(first.data) == 2
        assert first.next_cursor is not None
        rest = items_service.list_items(2, first.next_cursor)
        filtered = items_service.list_items(25, None, "Paged 1")
    assert [row.name for row in first.data + rest.data] == ["Paged 2", "Paged 1", "Paged 0"]
    assert [row.name for row in filtered.data] == ["Paged 1"]
    query = items_service.ITEM_COLUMNS.where(items_service.ITEMS.c.name == bindparam("name"))
    assert not is_prepared(query)
    with app.app_context():
        assert plan(query, db.engine, frozenset({"name"})) is None


@on_postgresql_only
def test_a_statement_with_a_literal_is_left_to_sqlalchemy(app):
    literal = prepared(select(items_service.ITEMS.c.id).where(items_service.ITEMS.c.quantity > 5))
    with app.app_context():
        assert plan(literal, db.engine, frozenset()) is None
        assert read_rows(literal) == []


def test_on_sqlite_a_prepared_read_goes_through_sqlalchemy(app, client, database_url):
    created = client.post("/api/items", json={"name": "Either way"}).json
    with app.app_context():
        found = plan(items_service.ITEM_BY_ID, db.engine, frozenset({"item_id"}))
        row = read_row(items_service.ITEM_BY_ID, {"item_id": uuid.UUID(created["id"])})
    assert (found is not None) == database_url.startswith("postgresql")
    assert row is not None
    assert row.name == "Either way"
    assert row.created_at.tzinfo is not None


@on_postgresql_only
def test_a_failing_read_raises_as_sqlalchemy_does_and_the_connection_stays_usable(
    app, make_app, database_url
):
    """A second app with a pool of one, on the schema the session's `app` made."""
    one = make_app(DATABASE_URL=database_url, DB_POOL_SIZE="1")
    with one.app_context():
        with pytest.raises(sa_exc.DataError):
            read_row(items_service.ITEM_BY_ID, {"item_id": "not a uuid"})
        # The one pooled connection is back, out of autocommit, and a transaction on it
        # commits as ever.
        pooled = db.engine.raw_connection()
        try:
            assert pooled.driver_connection.autocommit is False
        finally:
            pooled.close()
        created = items_service.create_item("After the error")
        assert read_row(items_service.ITEM_BY_ID, {"item_id": created.id}).name == (
            "After the error"
        )


@on_postgresql_only
def test_a_read_leaves_its_connection_out_of_autocommit(app, make_app, database_url):
    """A second app with a pool of one, on the schema the session's `app` made."""
    one = make_app(DATABASE_URL=database_url, DB_POOL_SIZE="1")
    with one.app_context():
        assert read_row(items_service.ITEM_BY_ID, {"item_id": uuid.uuid4()}) is None
        with db.engine.connect() as connection:
            assert connection.connection.driver_connection.autocommit is False
            started = connection.exec_driver_sql("SELECT now()").scalar_one()
            again = connection.exec_driver_sql("SELECT now()").scalar_one()
            connection.rollback()
    # In one transaction, now() does not move: the connection was not in autocommit.
    assert started == again
    assert isinstance(started, datetime)
    assert started.tzinfo is not None
    assert started.astimezone(UTC) == again.astimezone(UTC)


def through_sqlalchemy_insert(statement, parameters):
    with autocommit(db.engine).connect() as connection:
        return connection.execute(statement, parameters).all()


@on_postgresql_only
def test_a_prepared_insert_stores_what_sqlalchemy_stores(app):
    values = {"name": "Inserted", "description": None, "quantity": 2}
    with app.app_context():
        assert plan(items_service.INSERT_ITEM, db.engine, frozenset(values)) is not None
        fast = write_one(items_service.INSERT_ITEM, values)
        (slow,) = through_sqlalchemy_insert(items_service.INSERT_ITEM, values)
        stored = read_rows(items_service.ITEM_BY_ID, {"item_id": fast.id})
    # Column defaults made per insert (a new time-ordered id, now), the rest as given.
    assert fast.id != slow.id
    assert fast.id.version == slow.id.version == 7
    assert fast.version == slow.version == 1
    assert abs(fast.created_at - slow.created_at).total_seconds() < 60
    assert fast.created_at.tzinfo is not None
    assert [type(value) for value in fast] == [type(value) for value in slow]
    assert stored[0]._asdict() == fast._asdict()
    assert {k: v for k, v in fast._asdict().items() if k in values} == values


@on_postgresql_only
def test_a_prepared_delivery_insert_stores_its_json_and_finds_its_duplicate(app):
    statement = webhooks_service.INSERT_NEW["postgresql"]
    values = {
        "source": "default",
        "delivery_id": f"evt_{uuid.uuid4().hex}",
        "event_type": "ping",
        "payload": {"id": "evt", "nested": {"n": [1, 2.5, None, "ü"]}},
        "raw_body": b'{"id": "evt"}',
        "status": webhooks_service.EventStatus.RECEIVED,
    }
    with app.app_context():
        assert plan(statement, db.engine, frozenset(values)) is not None
        (created,) = write_alone(statement, values)
        assert write_alone(statement, values) == []  # the same delivery again: nothing
        event = db.session.get(webhooks_service.WebhookEvent, created.id)
        assert event.payload == values["payload"]
        assert event.raw_body == values["raw_body"]
        assert event.status == webhooks_service.EventStatus.RECEIVED
        assert event.created_at.tzinfo is not None
        db.session.rollback()


@on_postgresql_only
def test_a_prepared_insert_that_breaks_a_constraint_raises_integrity_error(app):
    values = {"name": "Negative", "description": None, "quantity": -1}
    with app.app_context():
        with pytest.raises(sa_exc.IntegrityError):
            write_one(items_service.INSERT_ITEM, values)
        assert read_rows(items_service.ITEM_COLUMNS.where(items_service.ITEMS.c.quantity < 0)) == []


@on_postgresql_only
def test_a_default_that_wants_the_execution_context_is_left_to_sqlalchemy(app):
    table = Table(
        "contextual",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("made", String, default=lambda context: "by context"),
    )
    with app.app_context():
        assert (
            plan(prepared(insert(table).returning(table.c.id)), db.engine, frozenset({"id"}))
            is None
        )
