from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response, url_for

from backoffice.auth.guards import authenticated, current_principal
from backoffice.conventions import no_content
from backoffice.openapi import problem_responses
from backoffice.pagination import page_response
from backoffice.users import service
from backoffice.users.schemas import UserIn, UserList, UserOut, UserPatch, UserQuery

bp = APIBlueprint("users", __name__, tag="Users")

WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 415, 422)


@bp.post("/users")
@bp.auth_required(authenticated, optional=True)  # type: ignore[arg-type]  # APIFlask types it str
@bp.input(UserIn, arg_name="new_user")
@bp.output(UserOut, status_code=201)
@bp.doc(responses=problem_responses(400, 401, 403, 409, 415, 422))
def create_user(new_user: UserIn) -> Any:
    """Sign up (open registration), or create a user (admin, when REGISTRATION=admin)"""
    caller = authenticated.current_user
    is_admin = caller is not None and caller.is_admin
    user = service.sign_up(new_user.name, new_user.email, new_user.password, is_admin)
    return user, 201, {"Location": url_for(".get_user", user_id=user.id)}


@bp.get("/users")
@bp.auth_required(authenticated, roles=["admin"])
@bp.input(UserQuery, location="query", arg_name="query")
@bp.output(UserList)
@bp.doc(responses=problem_responses(400, 401, 403))
def list_users(query: UserQuery) -> Any:
    """List users (admin), newest first; filter by `active` and `role`"""
    return page_response(service.list_users(query.limit, query.cursor, query.active, query.role))


@bp.get("/users/me")
@bp.auth_required(authenticated, roles=["users"])
@bp.output(UserOut)
def get_me() -> Any:
    """The caller's own user"""
    return service.get_user(current_principal().user_id)


@bp.get("/users/<uuid:user_id>")
@bp.auth_required(authenticated, roles=["users"])
@bp.output(UserOut)
@bp.doc(responses=problem_responses(400, 401, 403, 404))
def get_user(user_id: uuid.UUID) -> Any:
    """One user: yourself, or anyone for an admin"""
    caller = current_principal()
    return service.visible_user(user_id, caller.user_id, caller.is_admin)


@bp.patch("/users/<uuid:user_id>")
@bp.auth_required(authenticated, roles=["users"])
@bp.input(UserPatch, arg_name="patch")
@bp.output(UserOut)
@bp.doc(responses=WRITE_ERRORS)
def update_user(user_id: uuid.UUID, patch: UserPatch) -> Any:
    """Change a user; only an admin changes `role` or `active`. A new password or a
    deactivation ends every token the user holds."""
    caller = current_principal()
    return service.update_user(user_id, patch.changes(), caller.user_id, caller.is_admin)


@bp.delete("/users/<uuid:user_id>")
@bp.auth_required(authenticated, roles=["users"])
@bp.doc(responses={204: "Deleted", **problem_responses(400, 401, 403, 404)})
def delete_user(user_id: uuid.UUID) -> Response:
    """Delete a user (yourself, or anyone for an admin): their tokens and keys end"""
    caller = current_principal()
    service.delete_user(user_id, caller.user_id, caller.is_admin)
    return no_content()
