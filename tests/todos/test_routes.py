"""Todos, per PRODUCT.md §1 and §2: every happy path and every error path.

Todos are personal: everything here is also about who may not see or touch a todo.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from itertools import count
from typing import Any

import pytest
from flask.testing import FlaskClient
from itsdangerous import URLSafeSerializer
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from backoffice.errors import StaleVersion
from backoffice.extensions import db
from backoffice.todos import service
from backoffice.todos.models import Todo
from tests.support import TEST_SECRET_KEY, assert_problem, count_rows

_tasks = count(1)
#: A fixed id for parameters: pytest-xdist needs the same test ids in every worker.
UNKNOWN_ID = uuid.UUID("0190d1a2-0000-7000-8000-000000000000")


def create_todo(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    """Create a todo through the API and return its body."""
    response = client.post("/api/todos", json={"task": f"Task {next(_tasks)}", **fields})
    assert response.status_code == 201, response.json
    return dict(response.json)


def count_todos() -> int:
    return count_rows(Todo)


def stored(todo_id: str) -> Todo | None:
    return db.session.get(Todo, uuid.UUID(todo_id))


def snapshot(todo_id: str) -> tuple[str, bool, int] | None:
    todo = stored(todo_id)
    return None if todo is None else (todo.task, todo.done, todo.version)


@pytest.fixture
def other(as_user, make_user) -> FlaskClient:
    """Another member, who must never see or change the first member's todos."""
    return as_user(make_user())


# --- create -----------------------------------------------------------------


def test_create_returns_201_with_location_etag_and_the_stored_todo(client, member, in_db):
    response = client.post("/api/todos", json={"task": "  Water the plants \n"})
    assert response.status_code == 201
    body = response.json
    assert set(body) == {"id", "task", "done", "created_at", "updated_at"}
    assert body["task"] == "Water the plants"
    assert body["done"] is False
    assert uuid.UUID(body["id"]).version == 7
    assert response.headers["Location"] == f"/api/todos/{body['id']}"
    assert response.headers["ETag"].startswith('"')
    assert body["created_at"].endswith("+00:00")
    assert datetime.fromisoformat(body["updated_at"]).utcoffset().total_seconds() == 0
    todo = in_db(lambda: stored(body["id"]))
    assert (todo.user_id, todo.task, todo.done, todo.version) == (
        member.id,
        "Water the plants",
        False,
        1,
    )


def test_create_can_start_done(client, in_db):
    body = create_todo(client, done=True)
    assert body["done"] is True
    assert in_db(lambda: stored(body["id"]).done) is True


@pytest.mark.parametrize(
    "task",
    ["line one\nline two\r\n\tindented", "x" * 500, "é" * 500, "ok 😀", "a"],
)
def test_create_accepts_multi_line_text_up_to_500_characters(client, in_db, task):
    body = create_todo(client, task=task)
    assert body["task"] == task
    assert in_db(lambda: stored(body["id"]).task) == task


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"task"}),
        ({"task": ""}, {"task"}),
        ({"task": "   \n\t "}, {"task"}),
        ({"task": "x" * 501}, {"task"}),
        ({"task": None}, {"task"}),
        ({"task": 42}, {"task"}),
        ({"task": ["a list"]}, {"task"}),
        ({"task": "nul\x00byte"}, {"task"}),
        ({"task": "bell\x07"}, {"task"}),
        ({"task": "escape\x1b[31m"}, {"task"}),
        ({"task": "ok", "done": "true"}, {"done"}),
        ({"task": "ok", "done": 1}, {"done"}),
        ({"task": "ok", "done": None}, {"done"}),
        ({"task": "ok", "priority": "high"}, {"priority"}),
        ({"task": "ok", "user_id": str(UNKNOWN_ID)}, {"user_id"}),
        ({"task": "ok", "id": str(UNKNOWN_ID)}, {"id"}),
        ({"task": "", "done": "no", "version": 2}, {"task", "done", "version"}),
    ],
)
def test_create_with_invalid_fields_is_422_naming_them_and_stores_nothing(
    client, in_db, payload, fields
):
    body = assert_problem(client.post("/api/todos", json=payload), 422, *fields)
    assert body["type"] == "/problems/validation-failed"
    assert all(error["message"] for error in body["errors"])
    assert in_db(count_todos) == 0


def test_create_with_another_content_type_is_415(client, in_db):
    response = client.post("/api/todos", data="task=x", content_type="text/plain")
    body = assert_problem(response, 415)
    assert "text/plain" in body["detail"]
    assert in_db(count_todos) == 0


@pytest.mark.parametrize("raw", ['{"task": "x"', '["task"]', '"task"', "null", "", "NaN"])
def test_create_with_malformed_or_non_object_json_is_400(client, in_db, raw):
    response = client.post("/api/todos", data=raw, content_type="application/json")
    assert_problem(response, 400)
    assert in_db(count_todos) == 0


def test_create_without_a_body_is_400(client, in_db):
    body = assert_problem(client.post("/api/todos"), 400)
    assert "JSON object" in body["detail"]
    assert in_db(count_todos) == 0


def test_create_with_a_body_over_the_limit_is_413(client, app, in_db):
    huge = '{"task": "' + "y" * app.config["MAX_CONTENT_LENGTH"] + '"}'
    assert_problem(client.post("/api/todos", data=huge, content_type="application/json"), 413)
    assert in_db(count_todos) == 0


def test_create_with_an_idempotency_key_replays_instead_of_creating_twice(client, in_db):
    headers = {"Idempotency-Key": "todo-1"}
    first = client.post("/api/todos", json={"task": "Once"}, headers=headers)
    again = client.post("/api/todos", json={"task": "Once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert in_db(count_todos) == 1
    reused = client.post("/api/todos", json={"task": "Twice"}, headers=headers)
    assert_problem(reused, 422, "Idempotency-Key")
    assert in_db(count_todos) == 1


# --- read -------------------------------------------------------------------


def test_get_missing_todo_is_404_problem(client):
    missing = uuid.uuid4()
    body = assert_problem(client.get(f"/api/todos/{missing}"), 404)
    assert body["detail"] == f"todo {missing} was not found"


def test_get_with_a_malformed_id_is_400(client):
    body = assert_problem(client.get("/api/todos/not-a-uuid"), 400)
    assert "not-a-uuid" in body["detail"]


# --- list -----------------------------------------------------------------------


def test_list_pages_newest_first_with_cursor_and_link_header(client):
    ids = [create_todo(client)["id"] for _ in range(30)]
    first = client.get("/api/todos")
    assert first.status_code == 200
    assert [todo["id"] for todo in first.json["data"]] == ids[::-1][:25]
    assert first.json["next_cursor"]
    link = first.headers["Link"]
    assert link.startswith("<http://localhost/api/todos?cursor=")
    assert link.endswith('>; rel="next"')
    second = client.get(link[1 : link.index(">")])
    assert [todo["id"] for todo in second.json["data"]] == ids[::-1][25:]
    assert second.json["next_cursor"] is None
    assert "Link" not in second.headers


def test_list_of_nothing_is_an_empty_page(client):
    response = client.get("/api/todos")
    assert response.json == {"data": [], "next_cursor": None}
    assert "Link" not in response.headers


def test_list_items_have_the_shape_of_a_single_todo(client):
    todo = create_todo(client, task="Shape")
    assert client.get("/api/todos").json["data"] == [todo]


@pytest.mark.parametrize(("flag", "expected"), [("true", True), ("false", False)])
def test_list_filters_by_done_and_keeps_the_filter_in_the_link(client, flag, expected):
    for index in range(6):
        create_todo(client, task=f"t{index}", done=index % 2 == 0)
    first = client.get(f"/api/todos?done={flag}&limit=2")
    assert [todo["done"] for todo in first.json["data"]] == [expected, expected]
    assert f"done={flag}" in first.headers["Link"]
    assert "limit=2" in first.headers["Link"]
    second = client.get(first.headers["Link"][1 : first.headers["Link"].index(">")])
    assert [todo["done"] for todo in second.json["data"]] == [expected]
    assert second.json["next_cursor"] is None
    tasks = [todo["task"] for todo in first.json["data"] + second.json["data"]]
    assert tasks == (["t4", "t2", "t0"] if expected else ["t5", "t3", "t1"])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=forged", "cursor"),
        ("done=maybe", "done"),
        ("sort=task", "sort"),
    ],
)
def test_list_with_bad_query_parameters_is_400_naming_them(client, query, field):
    assert_problem(client.get(f"/api/todos?{query}"), 400, field)


def test_a_cursor_made_for_another_list_is_rejected(client):
    items_cursor = URLSafeSerializer(TEST_SECRET_KEY, salt="cursor:items").dumps(uuid.uuid4().hex)
    assert_problem(client.get(f"/api/todos?cursor={items_cursor}"), 400, "cursor")


# --- replace (PUT) ------------------------------------------------------------


def test_put_replaces_every_field_and_changes_the_etag(client, in_db):
    created = client.post("/api/todos", json={"task": "Old"})
    todo = created.json
    response = client.put(f"/api/todos/{todo['id']}", json={"task": " New ", "done": True})
    assert response.status_code == 200
    assert response.json["task"] == "New"
    assert response.json["done"] is True
    assert response.json["created_at"] == todo["created_at"]
    assert response.json["updated_at"] >= todo["updated_at"]
    assert response.headers["ETag"] != created.headers["ETag"]
    assert client.get(f"/api/todos/{todo['id']}").headers["ETag"] == response.headers["ETag"]
    assert in_db(lambda: snapshot(todo["id"])) == ("New", True, 2)


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"task", "done"}),
        ({"task": "Changed"}, {"done"}),
        ({"done": True}, {"task"}),
        ({"task": "Changed", "done": None}, {"done"}),
        ({"task": " ", "done": True}, {"task"}),
        ({"task": "Changed", "done": True, "extra": 1}, {"extra"}),
    ],
)
def test_invalid_put_is_422_naming_the_fields_and_changes_nothing(client, in_db, payload, fields):
    todo = create_todo(client, task="Keep")
    assert_problem(client.put(f"/api/todos/{todo['id']}", json=payload), 422, *fields)
    assert in_db(lambda: snapshot(todo["id"])) == ("Keep", False, 1)


def test_put_on_missing_todo_is_404(client):
    response = client.put(f"/api/todos/{uuid.uuid4()}", json={"task": "x", "done": False})
    assert_problem(response, 404)


@pytest.mark.parametrize("current", [True, False])
def test_put_with_current_or_star_if_match_succeeds(client, current):
    todo = create_todo(client)
    etag = client.get(f"/api/todos/{todo['id']}").headers["ETag"] if current else "*"
    response = client.put(
        f"/api/todos/{todo['id']}", json={"task": "Fresh", "done": True}, headers={"If-Match": etag}
    )
    assert response.status_code == 200
    assert response.json["task"] == "Fresh"


# --- update (PATCH) -----------------------------------------------------------


def test_patch_changes_only_the_fields_sent(client, in_db):
    todo = create_todo(client, task="Same")
    response = client.patch(f"/api/todos/{todo['id']}", json={"done": True})
    assert response.status_code == 200
    assert (response.json["task"], response.json["done"]) == ("Same", True)
    assert response.headers["ETag"]
    assert in_db(lambda: snapshot(todo["id"])) == ("Same", True, 2)
    response = client.patch(f"/api/todos/{todo['id']}", json={"task": "  Renamed  "})
    assert (response.json["task"], response.json["done"]) == ("Renamed", True)
    assert in_db(lambda: snapshot(todo["id"])) == ("Renamed", True, 3)


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {""}),
        ({"task": None}, {"task"}),
        ({"done": None}, {"done"}),
        ({"task": " "}, {"task"}),
        ({"task": "x" * 501}, {"task"}),
        ({"task": "tab\tok but\x00not nul"}, {"task"}),
        ({"done": "yes"}, {"done"}),
        ({"done": 0}, {"done"}),
        ({"version": 3}, {"version"}),
    ],
)
def test_invalid_patch_is_422_and_changes_nothing(client, in_db, payload, fields):
    todo = create_todo(client, task="Stable")
    assert_problem(client.patch(f"/api/todos/{todo['id']}", json=payload), 422, *fields)
    assert in_db(lambda: snapshot(todo["id"])) == ("Stable", False, 1)


def test_patch_with_current_if_match_succeeds(client):
    todo = create_todo(client)
    etag = client.get(f"/api/todos/{todo['id']}").headers["ETag"]
    response = client.patch(
        f"/api/todos/{todo['id']}", json={"done": True}, headers={"If-Match": etag}
    )
    assert response.status_code == 200


def test_patch_missing_todo_is_404(client):
    assert_problem(client.patch(f"/api/todos/{uuid.uuid4()}", json={"done": True}), 404)


# --- delete -------------------------------------------------------------------


def test_delete_is_204_with_an_empty_body_and_the_todo_is_gone(client, in_db):
    todo = create_todo(client)
    response = client.delete(f"/api/todos/{todo['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    assert in_db(lambda: stored(todo["id"])) is None
    assert_problem(client.get(f"/api/todos/{todo['id']}"), 404)
    assert_problem(client.delete(f"/api/todos/{todo['id']}"), 404)


def test_delete_missing_todo_is_404(client):
    assert_problem(client.delete(f"/api/todos/{uuid.uuid4()}"), 404)


def test_delete_with_current_if_match_is_204(client, in_db):
    todo = create_todo(client)
    etag = client.get(f"/api/todos/{todo['id']}").headers["ETag"]
    assert client.delete(f"/api/todos/{todo['id']}", headers={"If-Match": etag}).status_code == 204
    assert in_db(lambda: stored(todo["id"])) is None


@pytest.mark.parametrize("forged", ['"1-0000000000000000"', '"stale"', "garbage", ""])
def test_a_forged_or_garbled_if_match_is_412_and_changes_nothing(client, in_db, forged):
    todo = create_todo(client, task="Kept")
    path = f"/api/todos/{todo['id']}"
    assert_problem(client.patch(path, json={"done": True}, headers={"If-Match": forged}), 412)
    assert_problem(client.delete(path, headers={"If-Match": forged}), 412)
    assert in_db(lambda: snapshot(todo["id"])) == ("Kept", False, 1)


def test_the_etag_of_another_of_your_todos_is_412(client, in_db):
    todo, other = create_todo(client, task="Kept"), create_todo(client)
    foreign = client.get(f"/api/todos/{other['id']}").headers["ETag"]
    path = f"/api/todos/{todo['id']}"
    assert_problem(client.patch(path, json={"done": True}, headers={"If-Match": foreign}), 412)
    assert in_db(lambda: snapshot(todo["id"])) == ("Kept", False, 1)


def test_if_match_star_needs_only_the_todo_to_exist(client):
    todo = create_todo(client)
    path, star = f"/api/todos/{todo['id']}", {"If-Match": "*"}
    assert client.patch(path, json={"done": True}, headers=star).status_code == 200
    assert client.delete(path, headers=star).status_code == 204
    assert_problem(client.delete(path, headers=star), 404)


# --- methods ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/todos", {"GET", "HEAD", "OPTIONS", "POST"}),
        (
            "post",
            f"/api/todos/{UNKNOWN_ID}",
            {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"},
        ),
    ],
)
def test_a_method_the_resource_does_not_have_is_405_with_allow(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert_problem(response, 405)
    assert {name.strip() for name in response.headers["Allow"].split(",")} == allowed


# --- todos are personal ---------------------------------------------------------


def test_another_members_todo_is_404_for_every_method_and_stays_unchanged(client, other, in_db):
    todo = create_todo(client, task="Mine")
    etag = client.get(f"/api/todos/{todo['id']}").headers["ETag"]
    path = f"/api/todos/{todo['id']}"
    attempts = [
        other.get(path),
        other.get(path, headers={"If-None-Match": etag}),
        other.put(path, json={"task": "Theirs", "done": True}),
        other.patch(path, json={"done": True}),
        other.patch(path, json={"done": True}, headers={"If-Match": '"stale"'}),
        other.delete(path),
        other.delete(path, headers={"If-Match": etag}),
    ]
    for response in attempts:
        body = assert_problem(response, 404)
        assert body["detail"] == f"todo {todo['id']} was not found"  # as for a missing one
    assert in_db(lambda: snapshot(todo["id"])) == ("Mine", False, 1)
    assert client.get(path).json == todo


def test_lists_show_only_the_callers_own_todos(client, other):
    mine = create_todo(client, task="Mine")
    theirs = create_todo(other, task="Theirs")
    assert client.get("/api/todos").json["data"] == [mine]
    assert other.get("/api/todos").json["data"] == [theirs]
    assert other.get("/api/todos?done=false").json["data"] == [theirs]


def test_a_cursor_does_not_reach_into_another_members_list(client, other):
    for _ in range(3):
        create_todo(client)
    theirs = create_todo(other)
    cursor = client.get("/api/todos?limit=1").json["next_cursor"]
    assert other.get(f"/api/todos?cursor={cursor}").json["data"] == []
    assert other.get("/api/todos").json["data"] == [theirs]


def test_an_admin_cannot_see_or_change_a_members_todo(client, as_user, admin, in_db):
    todo = create_todo(client, task="Private")
    admin_client = as_user(admin)
    path = f"/api/todos/{todo['id']}"
    assert_problem(admin_client.get(path), 404)
    assert_problem(admin_client.patch(path, json={"done": True}), 404)
    assert_problem(admin_client.put(path, json={"task": "x", "done": True}), 404)
    assert_problem(admin_client.delete(path), 404)
    assert admin_client.get("/api/todos").json["data"] == []
    assert in_db(lambda: snapshot(todo["id"])) == ("Private", False, 1)


def test_an_admins_own_todos_work_like_anyone_elses(as_user, admin, in_db):
    admin_client = as_user(admin)
    todo = create_todo(admin_client, task="Admin chores")
    assert admin_client.get("/api/todos").json["data"] == [todo]
    assert in_db(lambda: stored(todo["id"]).user_id) == admin.id


def test_deleting_a_user_deletes_their_todos_and_nobody_elses(client, other, member, in_db):
    mine = [create_todo(client)["id"] for _ in range(2)]
    theirs = create_todo(other)["id"]
    assert client.delete(f"/api/users/{member.id}").status_code == 204
    assert all(in_db(lambda todo_id=todo_id: stored(todo_id)) is None for todo_id in mine)
    assert in_db(lambda: stored(theirs)) is not None
    assert in_db(count_todos) == 1


# --- auth -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/todos", None),
        ("post", "/api/todos", {"task": "x"}),
        ("get", "/api/todos/{id}", None),
        ("put", "/api/todos/{id}", {"task": "x", "done": True}),
        ("patch", "/api/todos/{id}", {"done": True}),
        ("delete", "/api/todos/{id}", None),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"X-API-Key": "bo_nope_nope"}],
    ids=["none", "bad-token", "bad-key"],
)
def test_without_valid_credentials_is_401_with_www_authenticate(
    client, anonymous, in_db, method, path, body, headers
):
    todo = create_todo(client, task="Guarded")
    response = getattr(anonymous, method)(path.format(id=todo["id"]), json=body, headers=headers)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"]
    assert in_db(lambda: snapshot(todo["id"])) == ("Guarded", False, 1)
    assert in_db(count_todos) == 1


def new_api_key(client: FlaskClient, scopes: list[str]) -> str:
    response = client.post("/api/auth/api-keys", json={"name": "robot", "scopes": scopes})
    assert response.status_code == 201, response.json
    return str(response.json["key"])


def test_an_api_key_with_the_todos_scope_works_on_its_owners_todos(
    client, anonymous, member, in_db
):
    mine = create_todo(client)
    headers = {"X-API-Key": new_api_key(client, ["todos"])}
    assert anonymous.get("/api/todos", headers=headers).json["data"] == [mine]
    created = anonymous.post("/api/todos", json={"task": "From a script"}, headers=headers)
    assert created.status_code == 201
    assert in_db(lambda: stored(created.json["id"]).user_id) == member.id


def test_an_api_key_without_the_todos_scope_is_403(client, anonymous, in_db):
    todo = create_todo(client)
    headers = {"X-API-Key": new_api_key(client, ["items"])}
    assert_problem(anonymous.get("/api/todos", headers=headers), 403)
    assert_problem(anonymous.post("/api/todos", json={"task": "x"}, headers=headers), 403)
    assert_problem(anonymous.delete(f"/api/todos/{todo['id']}", headers=headers), 403)
    assert in_db(count_todos) == 1


# --- the OpenAPI document ---------------------------------------------------------


def test_every_todo_operation_is_documented_with_its_security_and_schemas(anonymous):
    paths = anonymous.get("/openapi.json").json["paths"]
    collection, single = paths["/api/todos"], paths["/api/todos/{todo_id}"]
    operations = {**{f"collection {m}": op for m, op in collection.items()}}
    operations |= {f"single {m}": op for m, op in single.items() if m != "parameters"}
    assert set(operations) == {
        "collection get",
        "collection post",
        "single get",
        "single put",
        "single patch",
        "single delete",
    }
    for operation in operations.values():
        assert operation["tags"] == ["Todos"]
        assert operation["summary"]
        assert operation["security"] == [
            {"BearerAuth": ["todos"]},
            {"ApiKeyAuth": ["todos"]},
            {"OAuth2PasswordFlow": ["todos"]},
        ]
        assert "401" in operation["responses"]

    def body(name: str) -> str:
        return operations[name]["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    def answer(name: str, status: str) -> str:
        content = operations[name]["responses"][status]["content"]["application/json"]
        return str(content["schema"]["$ref"])

    assert body("collection post").endswith("/TodoIn")
    assert body("single put").endswith("/TodoReplace")
    assert body("single patch").endswith("/TodoPatch")
    assert answer("collection get", "200").endswith("/TodoList")
    assert answer("collection post", "201").endswith("/TodoOut")
    assert answer("single get", "200").endswith("/TodoOut")
    assert "204" in operations["single delete"]["responses"]
    assert "412" in operations["single patch"]["responses"]
    assert {p["name"] for p in operations["collection get"]["parameters"]} == {
        "limit",
        "cursor",
        "done",
    }


# --- lost races (below HTTP: the moment cannot be timed through a client) ----------


@pytest.fixture
def racing_writer(app):
    """Just before our flush, another connection commits a change to the same row."""

    def arm(todo_id: uuid.UUID) -> None:
        def interfere(session: Session, *_: object) -> None:
            with db.engine.begin() as connection:
                connection.execute(
                    update(Todo)
                    .where(Todo.id == todo_id)
                    .values(task="Winner", version=Todo.version + 1)
                )

        event.listen(db.session.registry(), "before_flush", interfere, once=True)

    return arm


@pytest.mark.parametrize("expects_version", [False, True])
def test_a_write_that_loses_a_race_raises_stale_version_and_keeps_the_winner(
    app, member, racing_writer, expects_version
):
    with app.app_context():
        todo = service.create_todo(member.id, "Raced")
        expected = todo.version if expects_version else None
        racing_writer(todo.id)
        with pytest.raises(StaleVersion) as raised:
            service.update_todo(member.id, todo.id, {"done": True}, expected)
        assert (raised.value.resource, raised.value.raced) == ("todo", True)
        db.session.remove()
        raced = db.session.get(Todo, todo.id)
        assert (raced.task, raced.done, raced.version) == ("Winner", False, 2)
