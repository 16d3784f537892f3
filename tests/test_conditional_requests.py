"""The conditional-request conventions, the same for every versioned resource.

A resource served with the `ETag` of its version (its output model declared
`schemas.VersionedOutput`) answers every read with that ETag, a read whose
`If-None-Match` holds it with 304, a write whose `If-Match` holds an older one with 412
and no change, and its list's first page with a `Link` to the second. One row per
resource below; `test_every_model_served_with_an_etag_has_a_row_here` fails when the
document shows an ETag for a model with none. What only one resource does (a forged
ETag, `*`, lost races, how an order's ETag ignores its items') stays with its own tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.orders.models import Order, OrderLine
from backoffice.todos.models import Todo
from tests.items.factories import create_item
from tests.support import assert_problem

Write = Callable[[FlaskClient, str, dict[str, str]], TestResponse]


@dataclass(frozen=True)
class Resource:
    """How to drive one versioned resource through the conventions."""

    #: The output model it is answered as, as the OpenAPI document names it.
    schema: str
    collection: str
    #: Make one through the API; its answer to the create.
    create: Callable[[FlaskClient], TestResponse]
    #: Change it through the API, as another client would: older ETags go stale.
    change: Callable[[FlaskClient, str], TestResponse]
    #: Every write that honours If-Match, by name: (client, its URL, headers) -> answer.
    writes: dict[str, Write]
    #: The models whose rows a write may change (all of them compared, row by row).
    models: tuple[type, ...]


def _place_order(client: FlaskClient) -> TestResponse:
    item = create_item(client, quantity=10)
    return client.post("/api/orders", json={"lines": [{"item_id": item["id"], "quantity": 1}]})


RESOURCES = {
    "items": Resource(
        schema="ItemOut",
        collection="/api/items",
        create=lambda client: client.post("/api/items", json={"name": "Bolt", "quantity": 4}),
        change=lambda client, url: client.patch(url, json={"quantity": 3}),
        writes={
            "put": lambda client, url, headers: client.put(
                url, json={"name": "Lost", "description": None, "quantity": 1}, headers=headers
            ),
            "patch": lambda client, url, headers: client.patch(
                url, json={"quantity": 99}, headers=headers
            ),
            "delete": lambda client, url, headers: client.delete(url, headers=headers),
        },
        models=(Item,),
    ),
    "todos": Resource(
        schema="TodoOut",
        collection="/api/todos",
        create=lambda client: client.post("/api/todos", json={"task": "Water the plants"}),
        change=lambda client, url: client.patch(url, json={"done": True}),
        writes={
            "put": lambda client, url, headers: client.put(
                url, json={"task": "Lost", "done": False}, headers=headers
            ),
            "patch": lambda client, url, headers: client.patch(
                url, json={"task": "Lost"}, headers=headers
            ),
            "delete": lambda client, url, headers: client.delete(url, headers=headers),
        },
        models=(Todo,),
    ),
    "orders": Resource(
        schema="OrderOut",
        collection="/api/orders",
        create=_place_order,
        # Cancelled by another tab: a cancel holding the older ETag is 412 before it is
        # 409 (the version is checked first), and returns no stock twice.
        change=lambda client, url: client.post(f"{url}/cancel"),
        writes={
            "cancel": lambda client, url, headers: client.post(f"{url}/cancel", headers=headers),
        },
        models=(Order, OrderLine, Item),
    ),
}
WRITES = [(name, write) for name, resource in RESOURCES.items() for write in resource.writes]


@pytest.fixture(params=sorted(RESOURCES))
def resource(request: pytest.FixtureRequest) -> Resource:
    return RESOURCES[request.param]


def made(client: FlaskClient, resource: Resource) -> tuple[str, TestResponse]:
    """A new resource: its URL and the create's answer."""
    created = resource.create(client)
    assert created.status_code == 201, created.json
    return created.headers["Location"], created


def rows(models: tuple[type, ...]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the models' tables, every column (call inside an app context)."""
    found = {}
    for model in models:
        table = model.__table__  # type: ignore[attr-defined]
        found[table.name] = sorted(tuple(row) for row in db.session.execute(select(table)).all())
    return found


# --- every row, the same conventions ---------------------------------------------------


def test_a_read_answers_the_etag_its_create_answered(client, resource):
    url, created = made(client, resource)
    assert created.headers["ETag"].startswith('"1-')
    read = client.get(url)
    assert read.status_code == 200
    assert read.json == created.json
    assert read.headers["ETag"] == created.headers["ETag"]


def test_a_current_if_none_match_is_304_with_the_etag_and_no_body(client, resource):
    url, created = made(client, resource)
    etag = created.headers["ETag"]
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == etag


def test_a_stale_if_none_match_is_200_with_the_current_version(client, resource):
    url, created = made(client, resource)
    changed = resource.change(client, url)
    assert changed.status_code == 200, changed.json
    for stale in (created.headers["ETag"], '"stale"'):  # an older version's, a made-up one
        response = client.get(url, headers={"If-None-Match": stale})
        assert response.status_code == 200
        assert response.json == changed.json
        assert response.headers["ETag"] == changed.headers["ETag"] != created.headers["ETag"]


@pytest.mark.parametrize(("name", "write"), WRITES, ids=[f"{n}-{w}" for n, w in WRITES])
def test_a_write_with_a_stale_if_match_is_412_and_changes_nothing(client, in_db, name, write):
    resource = RESOURCES[name]
    url, created = made(client, resource)
    assert resource.change(client, url).status_code == 200
    before = in_db(lambda: rows(resource.models))

    response = resource.writes[write](client, url, {"If-Match": created.headers["ETag"]})
    body = assert_problem(response, 412)
    assert body["type"] == "/problems/precondition-failed"
    assert "ETag" not in response.headers
    assert in_db(lambda: rows(resource.models)) == before


def test_the_first_page_links_the_second_and_the_last_links_nothing(client, resource):
    first_made, second_made = (made(client, resource)[1].json for _ in range(2))
    first = client.get(resource.collection, query_string={"limit": 1})
    assert first.status_code == 200
    assert [row["id"] for row in first.json["data"]] == [second_made["id"]]
    link = first.headers["Link"]
    assert link.startswith(f"<http://localhost{resource.collection}?")
    assert link.endswith('>; rel="next"')
    assert "limit=1" in link
    second = client.get(link[1 : link.index(">")])
    assert second.status_code == 200
    assert [row["id"] for row in second.json["data"]] == [first_made["id"]]
    assert second.json["next_cursor"] is None
    assert "Link" not in second.headers


# --- the rows are the declared versioned resources --------------------------------------


def test_every_model_served_with_an_etag_has_a_row_here(client):
    """The document shows `ETag` where the code declares a model `VersionedOutput`
    (`openapi._versioned`): a newly declared resource fails here until it has a row."""
    spec = client.get("/openapi.json").json
    served_with_etag = set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                body = response.get("content", {}).get("application/json", {})
                if status.startswith("2") and "ETag" in response.get("headers", {}):
                    served_with_etag.add(body["schema"]["$ref"].rpartition("/")[2])
    assert served_with_etag == {resource.schema for resource in RESOURCES.values()}
    for resource in RESOURCES.values():
        created = spec["paths"][resource.collection]["post"]["responses"]["201"]
        assert created["content"]["application/json"]["schema"]["$ref"].endswith(
            f"/{resource.schema}"
        )
