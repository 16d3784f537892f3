"""Todos as class-based resources: one `MethodView` for the collection, one for a todo.

The caller's id comes from the credentials and goes to every service call, so each
person works on their own list only. Auth is declared once per class (`decorators`);
APIFlask copies it into every method's OpenAPI operation.
"""

from __future__ import annotations

import uuid
from typing import Any

from apiflask.views import MethodView
from flask import Response, url_for

from backoffice.conventions import (
    etag_for,
    etag_header,
    expected_version,
    no_content,
    not_modified,
)
from backoffice.guards import authenticated, current_principal
from backoffice.idempotency import idempotent
from backoffice.openapi import PRECONDITION_RESPONSES, problem_responses
from backoffice.output import Blueprint
from backoffice.todos import service
from backoffice.todos.schemas import TodoIn, TodoList, TodoOut, TodoPatch, TodoQuery, TodoReplace

bp = Blueprint("todos", __name__, tag="Todos")


class TodoCollection(MethodView):
    """`{prefix}/todos`: the caller's todos."""

    decorators = [bp.auth_required(authenticated, roles=["todos"])]

    @bp.input(TodoQuery, location="query", arg_name="query")
    @bp.output(TodoList)
    @bp.doc(operation_id="list_todos", responses=problem_responses(400, 401, 403))
    def get(self, query: TodoQuery) -> Any:
        """List your todos, newest first"""
        owner = current_principal().user_id
        return service.list_todos(owner, query.limit, query.cursor, query.done)

    @idempotent
    @bp.input(TodoIn, arg_name="todo")
    @bp.output(TodoOut, status_code=201)
    @bp.doc(
        operation_id="create_todo", responses=problem_responses(400, 401, 403, 409, 413, 415, 422)
    )
    def post(self, todo: TodoIn) -> Any:
        """Create a todo"""
        created = service.create_todo(current_principal().user_id, **todo.model_dump())
        headers = {
            "Location": url_for(".todo", todo_id=created.id),
            **etag_header(etag_for(created.id, created.version)),
        }
        return created, 201, headers


class TodoResource(MethodView):
    """`{prefix}/todos/<id>`: one of the caller's todos (anyone else's is 404)."""

    decorators = [bp.auth_required(authenticated, roles=["todos"])]

    @bp.output(TodoOut)
    @bp.doc(
        operation_id="get_todo", responses=problem_responses(400, 401, 403, 404, status_304=True)
    )
    def get(self, todo_id: uuid.UUID) -> Any:
        """Get one of your todos"""
        todo = service.get_todo(current_principal().user_id, todo_id)
        etag = etag_for(todo.id, todo.version)
        return not_modified(etag) or (todo, 200, etag_header(etag))

    @bp.input(TodoReplace, arg_name="replacement")
    @bp.output(TodoOut)
    @bp.doc(operation_id="replace_todo", responses=PRECONDITION_RESPONSES)
    def put(self, todo_id: uuid.UUID, replacement: TodoReplace) -> Any:
        """Replace a todo (every writable field is required)"""
        owner = current_principal().user_id
        changes = replacement.model_dump()
        todo = service.update_todo(owner, todo_id, changes, expected_version(todo_id))
        return todo, 200, etag_header(etag_for(todo.id, todo.version))

    @bp.input(TodoPatch, arg_name="patch")
    @bp.output(TodoOut)
    @bp.doc(operation_id="update_todo", responses=PRECONDITION_RESPONSES)
    def patch(self, todo_id: uuid.UUID, patch: TodoPatch) -> Any:
        """Change some fields of a todo"""
        owner = current_principal().user_id
        todo = service.update_todo(owner, todo_id, patch.changes(), expected_version(todo_id))
        return todo, 200, etag_header(etag_for(todo.id, todo.version))

    @bp.doc(
        operation_id="delete_todo",
        responses={204: "Deleted", **problem_responses(400, 401, 403, 404, 409, 412)},
    )
    def delete(self, todo_id: uuid.UUID) -> Response:
        """Delete a todo"""
        owner = current_principal().user_id
        service.delete_todo(owner, todo_id, expected_version(todo_id))
        return no_content()


bp.add_url_rule("/todos", view_func=TodoCollection.as_view("todos"))
bp.add_url_rule("/todos/<uuid:todo_id>", view_func=TodoResource.as_view("todo"))
