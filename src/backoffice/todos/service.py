"""Todo rules: plain values in, plain values (or APIError, StaleVersion) out.

Every function takes the owner's id: a todo is only ever found through its owner, so
another person's todo is simply not there (404), for admins too.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select

from backoffice import transactions
from backoffice.errors import NotFound
from backoffice.extensions import db
from backoffice.pagination import Page, paginate
from backoffice.prepared import prepared
from backoffice.readonly import read_row
from backoffice.todos.models import Todo
from backoffice.versioning import commit_versioned, require_version

#: The table behind `Todo`, for the Core statements of the reads and the create.
TODOS = cast(Table, Todo.__table__)
#: What a read returns: the columns a response shows, plus `version` for the ETag.
TODO_COLUMNS = select(
    TODOS.c.id,
    TODOS.c.task,
    TODOS.c.done,
    TODOS.c.version,
    TODOS.c.created_at,
    TODOS.c.updated_at,
)
TODO_BY_OWNER_AND_ID = prepared(
    TODO_COLUMNS.where(TODOS.c.id == bindparam("todo_id"), TODOS.c.user_id == bindparam("user_id"))
)


def get_todo(user_id: uuid.UUID, todo_id: uuid.UUID) -> Row[Any]:
    row = read_row(TODO_BY_OWNER_AND_ID, {"todo_id": todo_id, "user_id": user_id})
    if row is None:
        raise NotFound("todo", todo_id)
    return row


def list_todos(
    user_id: uuid.UUID, limit: int, cursor: str | None, done: bool | None = None
) -> Page[Row[Any]]:
    query = TODO_COLUMNS.where(TODOS.c.user_id == user_id)
    if done is not None:
        query = query.where(TODOS.c.done == done)
    return paginate("todos", query, Todo.id, limit, cursor)


def create_todo(user_id: uuid.UUID, task: str, done: bool = False) -> Row[Any]:
    row = db.session.execute(
        insert(TODOS)
        .values(user_id=user_id, task=task, done=done)
        .returning(*TODO_COLUMNS.selected_columns)
    ).one()
    transactions.commit()
    return row


def _load(user_id: uuid.UUID, todo_id: uuid.UUID) -> Todo:
    todo = db.session.get(Todo, todo_id)
    if todo is None or todo.user_id != user_id:
        raise NotFound("todo", todo_id)
    return todo


def update_todo(
    user_id: uuid.UUID,
    todo_id: uuid.UUID,
    changes: dict[str, Any],
    expected_version: int | None = None,
) -> Todo:
    """Apply `changes`, if the todo is still at `expected_version` (None: any version)."""
    todo = _load(user_id, todo_id)
    require_version("todo", todo_id, todo.version, expected_version)
    for field, value in changes.items():
        setattr(todo, field, value)
    commit_versioned("todo", todo_id)
    return todo


def delete_todo(
    user_id: uuid.UUID, todo_id: uuid.UUID, expected_version: int | None = None
) -> None:
    todo = _load(user_id, todo_id)
    require_version("todo", todo_id, todo.version, expected_version)
    db.session.delete(todo)
    commit_versioned("todo", todo_id)
