"""`database.reads_only`: the session reads without a transaction where, and only where, it
is asked to; the HTTP layer asks for safe requests (`conventions`), nothing else does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection

from backoffice.database import reads_only
from backoffice.extensions import db
from backoffice.orders.models import Order
from tests.items.factories import create_item
from tests.support import assert_problem

UNKNOWN_ID = "0190d1a2-0000-7000-8000-000000000000"


def in_autocommit(connection: Connection) -> bool:
    """What the driver itself is set to: psycopg's `autocommit`, or sqlite3's
    `isolation_level` of None (it otherwise opens a transaction before a write)."""
    driver = connection.connection.dbapi_connection
    if connection.dialect.name == "postgresql":
        return bool(driver.autocommit)  # type: ignore[union-attr]
    return driver.isolation_level is None  # type: ignore[union-attr]


@contextmanager
def statements_on_orders(app: Flask) -> Iterator[list[tuple[str, bool, int]]]:
    """Every statement sent about the orders table meanwhile: its first word, whether it
    ran in autocommit, and the thread that sent it."""
    seen: list[tuple[str, bool, int]] = []

    def record(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if " orders" in statement:
            seen.append((statement.split()[0], in_autocommit(connection), threading.get_ident()))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def bind_in_autocommit() -> bool:
    """Whether the session's next statement runs in autocommit (it asks for a bind anew
    after a rollback)."""
    db.session.rollback()
    return in_autocommit(db.session.connection())


def order(client: FlaskClient, item: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/orders", json={"lines": [{"item_id": item["id"], "quantity": 1}]})
    assert response.status_code == 201, response.json
    return dict(response.json)


def test_the_session_reads_in_autocommit_inside_reads_only_and_nowhere_else(app):
    with app.app_context():
        assert not bind_in_autocommit()
        with reads_only():
            assert bind_in_autocommit()
            with reads_only():
                assert bind_in_autocommit()
            assert bind_in_autocommit()  # the inner one ended, not the outer
        assert not bind_in_autocommit()


def test_a_request_context_alone_chooses_no_autocommit(app):
    """Code run within a GET (a test, a CLI helper, a hook before the conventions') keeps
    its transaction: only the HTTP layer's own hook opens `reads_only()`."""
    with app.test_request_context("/api/orders", method="GET"):
        assert not bind_in_autocommit()


def test_safe_requests_read_in_autocommit_and_writes_keep_their_transaction(app, client):
    item = create_item(client, quantity=10)
    with statements_on_orders(app) as seen:
        first = order(client, item)
        assert client.get("/api/orders").json["data"][0]["id"] == first["id"]
        assert client.head(f"/api/orders/{first['id']}").status_code == 200
        assert_problem(client.get(f"/api/orders/{UNKNOWN_ID}"), 404)
        order(client, item)  # after safe ones, and after one that failed, on this thread
    kinds = [(kind, autocommit) for kind, autocommit, _ in seen]
    assert ("INSERT", False) in kinds
    assert ("SELECT", True) in kinds
    assert {autocommit for kind, autocommit in kinds if kind != "SELECT"} == {False}
    writes = [n for n, (kind, _) in enumerate(kinds) if kind == "INSERT"]
    assert not kinds[writes[-1]][1]  # the last order, after the GETs: a transaction again
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 2


def test_a_write_beside_a_safe_request_in_flight_keeps_its_transaction(app, as_user, member):
    """Each thread has its own: a POST served while a GET reads, on another thread, is not
    in the GET's autocommit (nor the GET in the POST's transaction)."""
    reader, writer = as_user(member), as_user(member)
    item = create_item(writer, quantity=10)
    get_reading, post_done = threading.Event(), threading.Event()
    answers: dict[str, int] = {}

    def hold_the_read(_connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT") and " orders" in statement and not get_reading.is_set():
            get_reading.set()
            assert post_done.wait(timeout=30), "the POST never finished"

    def read() -> None:
        answers["GET"] = reader.get("/api/orders").status_code

    with app.app_context():
        engine = db.engine
    with statements_on_orders(app) as seen:
        event.listen(engine, "before_cursor_execute", hold_the_read)
        try:
            thread = threading.Thread(target=read)
            thread.start()
            assert get_reading.wait(timeout=30), "the GET never read"
            try:
                order(writer, item)
            finally:
                post_done.set()
            thread.join(timeout=30)
        finally:
            event.remove(engine, "before_cursor_execute", hold_the_read)
    assert answers == {"GET": 200}
    by_thread = {thread.ident: set(), threading.get_ident(): set()}
    for kind, autocommit, ident in seen:
        by_thread[ident].add((kind, autocommit))
    assert by_thread[thread.ident] == {("SELECT", True)}
    assert ("INSERT", False) in by_thread[threading.get_ident()]
    assert ("INSERT", True) not in by_thread[threading.get_ident()]
