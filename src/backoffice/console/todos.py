"""Todos: your own (an admin's too: a todo is only ever its owner's); create, mark done or
not, edit and delete with the API's If-Match rule carried as the form's `version`."""

from __future__ import annotations

import uuid
from typing import Any

from flask import render_template, request
from pydantic import ValidationError

from backoffice.console.pages import (
    audit,
    back_to,
    bp,
    cursor_arg,
    field_errors,
    operator,
    page_limit,
)
from backoffice.errors import StaleVersion
from backoffice.todos import service as todos
from backoffice.todos.schemas import TodoIn, TodoQuery, TodoReplace

MESSAGES = {
    "created": "The todo was added.",
    "saved": "The todo was saved.",
    "done": "The todo was marked done.",
    "reopened": "The todo was marked not done.",
    "deleted": "The todo was deleted.",
}
#: The `done` filter as the list's form sends it.
SHOWN = {"open": False, "done": True}


def _version() -> int:
    """The version the form was loaded at (0, which no row has, when it is missing)."""
    version = request.form.get("version", "")
    return int(version) if version.isdigit() else 0


def _list_page(form: dict[str, Any], errors: dict[str, str], status: int = 200) -> Any:
    """Your todos (all, open or done), with the new-todo form as it was sent."""
    shown = request.args.get("show", "")
    try:
        query = TodoQuery.model_validate({"cursor": cursor_arg(), "limit": page_limit()})
    except ValidationError as error:
        html = render_template(
            "console/todos.html", page=None, show="", form=form, errors=field_errors(error)
        )
        return html, 400
    page = todos.list_todos(operator().user_id, query.limit, query.cursor, SHOWN.get(shown))
    return render_template(
        "console/todos.html",
        page=page,
        show=shown if shown in SHOWN else "",
        form=form,
        errors=errors,
        message=MESSAGES.get(request.args.get("done", "")),
    ), status


@bp.get("/todos")
def todo_list() -> Any:
    return _list_page({}, {})


@bp.post("/todos")
def todo_create() -> Any:
    form = {"task": request.form.get("task", "")}
    try:
        new = TodoIn.model_validate(form)
    except ValidationError as error:
        return _list_page(form, field_errors(error), 422)
    row = todos.create_todo(operator().user_id, new.task)
    audit("todo.create", todo=str(row.id))
    return back_to("console.todo_list", "created")


def _edit_page(todo_id: uuid.UUID, form: dict[str, Any] | None, **context: Any) -> Any:
    todo = todos.get_todo(operator().user_id, todo_id)
    return render_template(
        "console/todo_edit.html",
        todo=todo,
        form=form if form is not None else todo._asdict(),
        errors=context.pop("errors", {}),
        message=MESSAGES.get(request.args.get("done", "")),
        **context,
    )


@bp.get("/todos/<uuid:todo_id>")
def todo_edit(todo_id: uuid.UUID) -> Any:
    return _edit_page(todo_id, None)


@bp.post("/todos/<uuid:todo_id>")
def todo_save(todo_id: uuid.UUID) -> Any:
    """Saved only if nobody changed the todo since the form was loaded (its `version`)."""
    form = {"task": request.form.get("task", ""), "done": request.form.get("done") == "true"}
    try:
        changes = TodoReplace.model_validate(form)
    except ValidationError as error:
        return _edit_page(todo_id, form, errors=field_errors(error)), 422
    try:
        todos.update_todo(operator().user_id, todo_id, changes.model_dump(), _version())
    except StaleVersion:
        return _edit_page(todo_id, form, conflict=True), 409
    audit("todo.update", todo=str(todo_id))
    return back_to("console.todo_edit", "saved", todo_id=todo_id)


@bp.post("/todos/<uuid:todo_id>/done")
def todo_mark(todo_id: uuid.UUID) -> Any:
    """Mark done or not done from the list, at the version the list showed."""
    done = request.form.get("done") == "true"
    try:
        todos.update_todo(operator().user_id, todo_id, {"done": done}, _version())
    except StaleVersion:
        return _edit_page(todo_id, None, conflict=True), 409
    audit("todo.mark", todo=str(todo_id), done=done)
    return back_to("console.todo_list", "done" if done else "reopened")


@bp.post("/todos/<uuid:todo_id>/delete")
def todo_delete(todo_id: uuid.UUID) -> Any:
    try:
        todos.delete_todo(operator().user_id, todo_id, _version())
    except StaleVersion:
        return _edit_page(todo_id, None, conflict=True), 409
    audit("todo.delete", todo=str(todo_id))
    return back_to("console.todo_list", "deleted")
