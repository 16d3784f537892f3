"""Todos in the console: your own only; create, mark done or not, edit and delete with
the If-Match rule carried as the form's version."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from backoffice.extensions import db
from backoffice.todos.models import Todo
from tests.support import count_rows

XSS = "<svg onload=alert(1)>"


def _todos(in_db) -> list[tuple[str, bool, int]]:
    def run() -> list[tuple[str, bool, int]]:
        rows = db.session.scalars(select(Todo).order_by(Todo.id)).all()
        return [(todo.task, todo.done, todo.version) for todo in rows]

    return in_db(run)


def _only_id(in_db) -> uuid.UUID:
    return in_db(lambda: db.session.scalar(select(Todo.id)))


def test_create_stores_the_todo_and_the_list_shows_it_as_text(console_as, member, in_db):
    console = console_as(member)
    answer = console.post("/console/todos", {"task": f"  Buy {XSS} "})
    assert answer.status_code == 303
    assert _todos(in_db) == [(f"Buy {XSS}", False, 1)]
    page = console.get(answer.headers["Location"])
    assert "The todo was added." in page.text
    assert XSS not in page.text
    assert "Buy &lt;svg onload=alert(1)&gt;" in page.text


def test_an_empty_task_is_422_naming_the_field_and_stores_nothing(console_as, member, in_db):
    answer = console_as(member).post("/console/todos", {"task": "   "})
    assert answer.status_code == 422
    assert 'aria-describedby="e-task"' in answer.text
    assert in_db(lambda: count_rows(Todo)) == 0


def test_mark_done_and_not_done_from_the_list(console_as, member, in_db):
    console = console_as(member)
    console.post("/console/todos", {"task": "Ship it"})
    todo_id = _only_id(in_db)
    answer = console.post(f"/console/todos/{todo_id}/done", {"done": "true", "version": "1"})
    assert answer.status_code == 303
    assert _todos(in_db) == [("Ship it", True, 2)]
    assert "Mark not done" in console.get("/console/todos").text
    console.post(f"/console/todos/{todo_id}/done", {"done": "false", "version": "2"})
    assert _todos(in_db) == [("Ship it", False, 3)]
    finished = console.get("/console/todos", query_string={"show": "done"})
    assert "Ship it" not in finished.text


def test_an_edit_saves_task_and_state(console_as, member, in_db):
    console = console_as(member)
    console.post("/console/todos", {"task": "Draft"})
    todo_id = _only_id(in_db)
    assert 'value="1"' in console.get(f"/console/todos/{todo_id}").text
    answer = console.post(
        f"/console/todos/{todo_id}", {"task": "Final", "done": "true", "version": "1"}
    )
    assert answer.status_code == 303
    assert _todos(in_db) == [("Final", True, 2)]
    assert "The todo was saved." in console.get(answer.headers["Location"]).text


def test_an_edit_that_lost_a_race_says_so_and_changes_nothing(console_as, member, client, in_db):
    console = console_as(member)
    console.post("/console/todos", {"task": "Draft"})
    todo_id = _only_id(in_db)
    assert client.patch(f"/api/todos/{todo_id}", json={"task": "Theirs"}).status_code == 200
    answer = console.post(f"/console/todos/{todo_id}", {"task": "Mine", "version": "1"})
    assert answer.status_code == 409
    assert "changed after you opened it" in answer.text
    assert "<dd>Theirs</dd>" in answer.text
    assert ">Mine</textarea>" in answer.text
    assert _todos(in_db) == [("Theirs", False, 2)]
    stale_delete = console.post(f"/console/todos/{todo_id}/delete", {"version": "1"})
    assert stale_delete.status_code == 409
    assert in_db(lambda: count_rows(Todo)) == 1


def test_a_bad_edit_is_422_and_changes_nothing(console_as, member, in_db):
    console = console_as(member)
    console.post("/console/todos", {"task": "Draft"})
    todo_id = _only_id(in_db)
    answer = console.post(f"/console/todos/{todo_id}", {"task": "", "version": "1"})
    assert answer.status_code == 422
    assert 'aria-describedby="e-task"' in answer.text
    assert _todos(in_db) == [("Draft", False, 1)]


def test_delete_removes_the_todo(console_as, member, in_db):
    console = console_as(member)
    console.post("/console/todos", {"task": "Gone soon"})
    todo_id = _only_id(in_db)
    answer = console.post(f"/console/todos/{todo_id}/delete", {"version": "1"})
    assert answer.status_code == 303
    assert in_db(lambda: count_rows(Todo)) == 0
    assert "The todo was deleted." in console.get(answer.headers["Location"]).text


def test_another_persons_todo_is_not_there_even_for_an_admin(console_as, member, admin, in_db):
    console_as(member).post("/console/todos", {"task": "Private"})
    todo_id = _only_id(in_db)
    boss = console_as(admin)
    assert "Private" not in boss.get("/console/todos").text
    assert boss.get(f"/console/todos/{todo_id}").status_code == 404
    done = boss.post(f"/console/todos/{todo_id}/done", {"done": "true", "version": "1"})
    assert done.status_code == 404
    assert boss.post(f"/console/todos/{todo_id}/delete", {"version": "1"}).status_code == 404
    assert _todos(in_db) == [("Private", False, 1)]
