"""Items, per PRODUCT.md §1 and §2: every happy path and every error path."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from backoffice.extensions import db
from backoffice.items.models import Item
from tests.items.factories import create_item
from tests.support import assert_problem, count_rows


def count_items() -> int:
    return count_rows(Item)


def stored(item_id: str) -> Item | None:
    return db.session.get(Item, uuid.UUID(item_id))


# --- create -----------------------------------------------------------------


def test_create_returns_201_with_location_etag_and_the_stored_item(client, in_db):
    response = client.post(
        "/api/items", json={"name": "  Widget  ", "description": " blue ", "quantity": 5}
    )
    assert response.status_code == 201
    body = response.json
    assert body["name"] == "Widget"
    assert body["description"] == "blue"
    assert body["quantity"] == 5
    assert uuid.UUID(body["id"]).version == 7
    assert response.headers["Location"] == f"/api/items/{body['id']}"
    assert response.headers["ETag"].startswith('"')
    created = datetime.fromisoformat(body["created_at"])
    assert created.utcoffset().total_seconds() == 0
    assert body["created_at"].endswith("+00:00")
    item = in_db(lambda: stored(body["id"]))
    assert (item.name, item.description, item.quantity) == ("Widget", "blue", 5)


def test_create_defaults_description_to_null_and_quantity_to_zero(client):
    body = client.post("/api/items", json={"name": "Bare"}).json
    assert body["description"] is None
    assert body["quantity"] == 0


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"name"}),
        ({"name": ""}, {"name"}),
        ({"name": "   "}, {"name"}),
        ({"name": "x" * 201}, {"name"}),
        ({"name": None}, {"name"}),
        ({"name": 42}, {"name"}),
        ({"name": "nul\x00byte"}, {"name"}),
        ({"name": "line\nbreak"}, {"name"}),
        ({"name": "ok", "description": "bell\x07"}, {"description"}),
        ({"name": "ok", "quantity": -1}, {"quantity"}),
        ({"name": "ok", "quantity": 2**31}, {"quantity"}),
        ({"name": "ok", "quantity": "5"}, {"quantity"}),
        ({"name": "ok", "quantity": 1.5}, {"quantity"}),
        ({"name": "ok", "quantity": 2.0**31}, {"quantity"}),
        ({"name": "ok", "quantity": float("inf")}, {"quantity"}),
        ({"name": "ok", "quantity": True}, {"quantity"}),
        ({"name": "ok", "description": "d" * 2001}, {"description"}),
        ({"name": "ok", "colour": "red"}, {"colour"}),
        ({"name": "", "quantity": -1, "id": "x"}, {"name", "quantity", "id"}),
    ],
)
def test_create_with_invalid_fields_is_422_naming_them_and_stores_nothing(
    client, in_db, payload, fields
):
    body = assert_problem(client.post("/api/items", json=payload), 422, *fields)
    assert all(error["message"] for error in body["errors"])
    assert in_db(count_items) == 0


def test_a_quantity_written_3_0_is_the_integer_3_as_json_schema_counts_it(client, in_db):
    response = client.post(
        "/api/items", data='{"name": "bolt", "quantity": 3.0}', content_type="application/json"
    )
    assert response.status_code == 201
    assert response.json["quantity"] == 3
    assert isinstance(response.json["quantity"], int)
    assert in_db(count_items) == 1


def test_create_with_another_content_type_is_415(client, in_db):
    response = client.post(
        "/api/items", data="name=x", content_type="application/x-www-form-urlencoded"
    )
    assert_problem(response, 415)
    assert in_db(count_items) == 0


@pytest.mark.parametrize("raw", ['{"name": "x"', "[1, 2]", '"text"', "null", "", "NaN"])
def test_create_with_malformed_or_non_object_json_is_400(client, in_db, raw):
    response = client.post("/api/items", data=raw, content_type="application/json")
    assert_problem(response, 400)
    assert in_db(count_items) == 0


def test_create_without_a_body_is_400(client, in_db):
    assert_problem(client.post("/api/items"), 400)
    assert in_db(count_items) == 0


def test_create_with_a_body_over_the_limit_is_413(client, app, in_db):
    huge = '{"name": "x", "description": "' + "y" * app.config["MAX_CONTENT_LENGTH"] + '"}'
    assert_problem(client.post("/api/items", data=huge, content_type="application/json"), 413)
    assert in_db(count_items) == 0


def test_json_with_a_charset_parameter_is_accepted(client):
    response = client.post(
        "/api/items", data='{"name": "x"}', content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 201


# --- read -------------------------------------------------------------------


def test_get_missing_item_is_404_problem(client):
    missing = uuid.uuid4()
    body = assert_problem(client.get(f"/api/items/{missing}"), 404)
    assert str(missing) in body["detail"]


def test_get_with_a_malformed_id_is_400(client):
    body = assert_problem(client.get("/api/items/not-a-uuid"), 400)
    assert "not-a-uuid" in body["detail"]


# --- replace (PUT) ------------------------------------------------------------


def test_put_replaces_every_field_and_changes_the_etag(client, in_db):
    item = create_item(client, description="old")
    before = client.get(f"/api/items/{item['id']}").headers["ETag"]
    response = client.put(
        f"/api/items/{item['id']}", json={"name": "New", "description": None, "quantity": 0}
    )
    assert response.status_code == 200
    assert response.json["name"] == "New"
    assert response.json["description"] is None
    assert response.headers["ETag"] != before
    assert response.json["updated_at"] >= item["updated_at"]
    assert in_db(lambda: stored(item["id"]).name) == "New"


def test_put_missing_fields_is_422_naming_each_and_changes_nothing(client, in_db):
    item = create_item(client, name="Keep")
    response = client.put(f"/api/items/{item['id']}", json={"name": "Changed"})
    assert_problem(response, 422, "description", "quantity")
    assert in_db(lambda: stored(item["id"]).name) == "Keep"


def test_put_on_missing_item_is_404(client):
    response = client.put(
        f"/api/items/{uuid.uuid4()}", json={"name": "x", "description": None, "quantity": 1}
    )
    assert_problem(response, 404)


@pytest.mark.parametrize("current", [True, False])
def test_put_with_current_or_star_if_match_succeeds(client, current):
    item = create_item(client)
    etag = client.get(f"/api/items/{item['id']}").headers["ETag"] if current else "*"
    response = client.put(
        f"/api/items/{item['id']}",
        json={"name": "Fresh", "description": "d", "quantity": 2},
        headers={"If-Match": etag},
    )
    assert response.status_code == 200


# --- update (PATCH) -----------------------------------------------------------


def test_patch_changes_only_the_fields_sent(client, in_db):
    item = create_item(client, name="Same", description="kept", quantity=1)
    response = client.patch(f"/api/items/{item['id']}", json={"quantity": 7})
    assert response.status_code == 200
    assert response.json["quantity"] == 7
    row = in_db(lambda: stored(item["id"]))
    assert (row.name, row.description, row.quantity) == ("Same", "kept", 7)


def test_patch_can_clear_the_description(client, in_db):
    item = create_item(client, description="bye")
    assert client.patch(f"/api/items/{item['id']}", json={"description": None}).status_code == 200
    assert in_db(lambda: stored(item["id"]).description) is None


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {""}),
        ({"name": None}, {"name"}),
        ({"quantity": None}, {"quantity"}),
        ({"quantity": -5}, {"quantity"}),
        ({"name": " "}, {"name"}),
        ({"version": 3}, {"version"}),
    ],
)
def test_invalid_patch_is_422_and_changes_nothing(client, in_db, payload, fields):
    item = create_item(client, name="Stable", quantity=4)
    assert_problem(client.patch(f"/api/items/{item['id']}", json=payload), 422, *fields)
    row = in_db(lambda: stored(item["id"]))
    assert (row.name, row.quantity, row.version) == ("Stable", 4, 1)


def test_patch_missing_item_is_404(client):
    assert_problem(client.patch(f"/api/items/{uuid.uuid4()}", json={"quantity": 1}), 404)


# --- delete -------------------------------------------------------------------


def test_delete_is_204_with_an_empty_body_and_the_item_is_gone(client, in_db):
    item = create_item(client)
    response = client.delete(f"/api/items/{item['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    assert in_db(lambda: stored(item["id"])) is None
    assert_problem(client.get(f"/api/items/{item['id']}"), 404)


def test_delete_missing_item_is_404(client):
    assert_problem(client.delete(f"/api/items/{uuid.uuid4()}"), 404)


def test_delete_with_current_if_match_is_204(client):
    item = create_item(client)
    etag = client.get(f"/api/items/{item['id']}").headers["ETag"]
    assert client.delete(f"/api/items/{item['id']}", headers={"If-Match": etag}).status_code == 204


# --- If-Match ---------------------------------------------------------------------


def current_etag(client, item: dict) -> str:
    return client.get(f"/api/items/{item['id']}").headers["ETag"]


@pytest.mark.parametrize(
    "if_match",
    [
        '"1-0000000000000000"',  # the right version, a made-up tag
        '"2-0000000000000000"',
        '"garbage"',
        "garbage",
        '"1-"',
        '"-1"',
        '"99999999999999999999999-ab"',
        "",
        ",",
        '""',  # an empty tag, which the parser gives back as None
        '"u-x", "", ""',
    ],
)
def test_a_forged_or_garbled_if_match_is_412_and_changes_nothing(client, in_db, if_match):
    item = create_item(client, quantity=1)
    response = client.patch(
        f"/api/items/{item['id']}", json={"quantity": 2}, headers={"If-Match": if_match}
    )
    body = assert_problem(response, 412)
    assert body["type"] == "/problems/precondition-failed"
    assert in_db(lambda: stored(item["id"]).quantity) == 1


def test_another_items_etag_is_412_though_both_are_at_the_same_version(client, in_db):
    item, other = create_item(client, quantity=1), create_item(client, quantity=1)
    foreign = current_etag(client, other)
    assert foreign.startswith('"1-')  # the same version: only the resource tells them apart
    response = client.put(
        f"/api/items/{item['id']}",
        json={"name": "x", "description": None, "quantity": 2},
        headers={"If-Match": foreign},
    )
    assert_problem(response, 412)
    assert_problem(client.delete(f"/api/items/{item['id']}", headers={"If-Match": foreign}), 412)
    assert in_db(lambda: stored(item["id"]).quantity) == 1


def test_a_weak_current_etag_does_not_satisfy_if_match(client):
    item = create_item(client)
    weak = f"W/{current_etag(client, item)}"
    assert_problem(
        client.patch(f"/api/items/{item['id']}", json={"quantity": 1}, headers={"If-Match": weak}),
        412,
    )


def test_if_match_listing_the_current_etag_among_others_succeeds(client):
    item = create_item(client, quantity=1)
    stale = current_etag(client, item)
    client.patch(f"/api/items/{item['id']}", json={"quantity": 2})
    listed = f'"garbage", {current_etag(client, item)}, {stale}'
    response = client.patch(
        f"/api/items/{item['id']}", json={"quantity": 3}, headers={"If-Match": listed}
    )
    assert response.status_code == 200
    assert response.json["quantity"] == 3


def test_if_match_listing_only_old_etags_is_412(client):
    item = create_item(client, quantity=1)
    older = current_etag(client, item)
    client.patch(f"/api/items/{item['id']}", json={"quantity": 2})
    old = current_etag(client, item)
    client.patch(f"/api/items/{item['id']}", json={"quantity": 3})
    headers = {"If-Match": f"{older}, {old}"}
    assert_problem(
        client.patch(f"/api/items/{item['id']}", json={"quantity": 4}, headers=headers), 412
    )


def test_if_match_star_needs_only_the_item_to_exist(client):
    item = create_item(client)
    client.patch(f"/api/items/{item['id']}", json={"quantity": 1})
    star = {"If-Match": "*"}
    assert (
        client.patch(f"/api/items/{item['id']}", json={"quantity": 2}, headers=star).status_code
        == 200
    )
    assert client.delete(f"/api/items/{item['id']}", headers=star).status_code == 204
    assert_problem(client.delete(f"/api/items/{item['id']}", headers=star), 404)


def test_a_missing_item_is_404_whatever_the_if_match(client):
    headers = {"If-Match": '"1-0000000000000000"'}
    assert_problem(
        client.patch(f"/api/items/{uuid.uuid4()}", json={"quantity": 1}, headers=headers), 404
    )


def test_the_etag_of_a_write_is_the_one_a_read_gives_and_names_the_version(client):
    item = create_item(client)
    response = client.patch(f"/api/items/{item['id']}", json={"quantity": 1})
    assert response.headers["ETag"] == current_etag(client, item)
    assert response.headers["ETag"].startswith('"2-')


# --- lost races (the moment is set up below HTTP, the answer read through it) ------


@pytest.fixture
def racing_writer(app):
    """Before the next flush of any session, another connection bumps the row's version."""
    armed = []

    def arm(item_id: str) -> None:
        def interfere(session: Session, *_: object) -> None:
            with db.engine.begin() as other:
                other.execute(
                    update(Item)
                    .where(Item.id == uuid.UUID(item_id))
                    .values(quantity=999, version=Item.version + 1)
                )

        event.listen(Session, "before_flush", interfere, once=True)
        armed.append(interfere)

    yield arm
    for interfere in armed:
        if event.contains(Session, "before_flush", interfere):
            event.remove(Session, "before_flush", interfere)


@pytest.mark.parametrize(("if_match", "status"), [(False, 409), (True, 412)])
def test_a_write_that_loses_a_race_is_409_or_412_with_if_match(
    client, in_db, racing_writer, if_match, status
):
    item = create_item(client, quantity=1)
    headers = {"If-Match": current_etag(client, item)} if if_match else {}
    racing_writer(item["id"])
    response = client.patch(f"/api/items/{item['id']}", json={"quantity": 5}, headers=headers)
    body = assert_problem(response, status)
    assert body["type"] == ("/problems/precondition-failed" if if_match else "/problems/conflict")
    assert "item" in body["detail"]
    assert in_db(lambda: stored(item["id"]).quantity) == 999


# --- list -----------------------------------------------------------------------


def test_list_pages_newest_first_with_cursor_and_link_header(client):
    ids = [create_item(client)["id"] for _ in range(30)]
    first = client.get("/api/items")
    assert first.status_code == 200
    assert [item["id"] for item in first.json["data"]] == ids[::-1][:25]
    cursor = first.json["next_cursor"]
    assert cursor
    link = first.headers["Link"]
    assert link.startswith("<http://localhost/api/items?cursor=")
    assert link.endswith('>; rel="next"')
    second = client.get(link[1 : link.index(">")])
    assert [item["id"] for item in second.json["data"]] == ids[::-1][25:]
    assert second.json["next_cursor"] is None
    assert "Link" not in second.headers


def test_list_of_nothing_is_an_empty_page(client):
    response = client.get("/api/items")
    assert response.json == {"data": [], "next_cursor": None}


def test_list_respects_limit_and_keeps_filters_in_the_link(client):
    for name in ("apple", "APPLE pie", "banana", "pineapple"):
        create_item(client, name=name)
    first = client.get("/api/items?q=apple&limit=2")
    assert [item["name"] for item in first.json["data"]] == ["pineapple", "APPLE pie"]
    assert "q=apple" in first.headers["Link"]
    assert "limit=2" in first.headers["Link"]
    second = client.get(f"/api/items?q=apple&limit=2&cursor={first.json['next_cursor']}")
    assert [item["name"] for item in second.json["data"]] == ["apple"]


@pytest.mark.parametrize("q", ["%", "_", "\\"])
def test_search_treats_wildcards_literally(client, q):
    create_item(client, name="plain")
    create_item(client, name=f"has {q} in it")
    names = [item["name"] for item in client.get("/api/items", query_string={"q": q}).json["data"]]
    assert names == [f"has {q} in it"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=forged", "cursor"),
        ("q=", "q"),
        ("sort=name", "sort"),
    ],
)
def test_list_with_bad_query_parameters_is_400_naming_them(client, query, field):
    assert_problem(client.get(f"/api/items?{query}"), 400, field)


def test_a_cursor_from_another_secret_is_rejected(client, app):
    from itsdangerous import URLSafeSerializer

    forged = URLSafeSerializer("another-secret", salt="cursor:items").dumps(uuid.uuid4().hex)
    assert_problem(client.get(f"/api/items?cursor={forged}"), 400, "cursor")
