from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response, request, url_for

from backoffice.attempts import PASSWORD_GUESSES, SIGN_UPS, limit_attempts
from backoffice.conventions import no_content
from backoffice.guards import authenticated, caller_if_any, current_principal
from backoffice.openapi import OPTIONAL_AUTH, problem_responses
from backoffice.pagination import page_response
from backoffice.users import service
from backoffice.users.schemas import UserIn, UserList, UserOut, UserPatch, UserQuery

bp = APIBlueprint("users", __name__, tag="Users")

WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 415, 422)


def _caller() -> service.Caller:
    principal = caller_if_any()
    if principal is None:
        return "anonymous"
    return "admin" if principal.is_admin else "member"


def _by_an_admin() -> bool:
    principal = authenticated.current_user
    return principal is not None and bool(principal.is_admin)


def _checks_no_password() -> bool:
    """Only a PATCH sending `current_password` checks a password (and is limited)."""
    body = request.get_json(silent=True)
    return not (isinstance(body, dict) and "current_password" in body)


@bp.post("/users")
@bp.auth_required(authenticated, optional=True)  # type: ignore[arg-type]  # APIFlask types it str
@limit_attempts(SIGN_UPS, exempt=_by_an_admin)
@bp.input(UserIn, arg_name="new_user")
@bp.output(UserOut, status_code=201)
@bp.doc(responses=problem_responses(400, 401, 403, 409, 415, 422, 429), extensions=OPTIONAL_AUTH)
def create_user(new_user: UserIn) -> Any:
    """Sign up (open registration), or create a user (admin, when REGISTRATION=admin)

    Sign-ups are limited per client IP (`SIGNUP_RATE_LIMIT`); admins are not limited.
    """
    user = service.sign_up(new_user.name, new_user.email, new_user.password, _caller())
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


@bp.patch("/users/me")
@bp.auth_required(authenticated, roles=["users"])
@limit_attempts(PASSWORD_GUESSES, exempt=_checks_no_password)
@bp.input(UserPatch, arg_name="patch")
@bp.output(UserOut)
@bp.doc(responses={**WRITE_ERRORS, **problem_responses(429)})
def update_me(patch: UserPatch) -> Any:
    """Change yourself; a new `password` or `email` needs your `current_password`

    Only an admin changes `role` or `active`. A missing or wrong `current_password` is
    422 (nothing changes), and a wrong one counts as a failed login. A new password or a
    deactivation ends every token you hold. No change may leave the service without an
    active admin (409)."""
    caller = current_principal()
    return service.update_user(caller.user_id, patch.changes(), caller.user_id, caller.is_admin)


@bp.patch("/users/<uuid:user_id>")
@bp.auth_required(authenticated, roles=["users"])
@limit_attempts(PASSWORD_GUESSES, exempt=_checks_no_password)
@bp.input(UserPatch, arg_name="patch")
@bp.output(UserOut)
@bp.doc(responses={**WRITE_ERRORS, **problem_responses(429)})
def update_user(user_id: uuid.UUID, patch: UserPatch) -> Any:
    """Change a user; only an admin changes `role` or `active`

    Your own new `password` or `email` needs your `current_password` (422 if missing or
    wrong; wrong ones count as failed logins); an admin changing someone else's does not.
    A new password or a deactivation ends every token the user holds; a deactivation ends
    their API keys too, for good. No change may leave the service without an active admin
    (409)."""
    caller = current_principal()
    return service.update_user(user_id, patch.changes(), caller.user_id, caller.is_admin)


@bp.delete("/users/me")
@bp.auth_required(authenticated, roles=["users"])
@bp.doc(responses={204: "Deleted", **problem_responses(400, 401, 403, 409)})
def delete_me() -> Response:
    """Delete yourself: your tokens and keys end

    The last active admin cannot be deleted (409)."""
    caller = current_principal()
    service.delete_user(caller.user_id, caller.user_id, caller.is_admin)
    return no_content()


@bp.delete("/users/<uuid:user_id>")
@bp.auth_required(authenticated, roles=["users"])
@bp.doc(responses={204: "Deleted", **problem_responses(400, 401, 403, 404, 409)})
def delete_user(user_id: uuid.UUID) -> Response:
    """Delete a user (yourself, or anyone for an admin): their tokens and keys end

    The last active admin cannot be deleted (409)."""
    caller = current_principal()
    service.delete_user(user_id, caller.user_id, caller.is_admin)
    return no_content()
