from __future__ import annotations

import uuid
from typing import Any

from apiflask.views import MethodView
from flask import Response, request, url_for

from backoffice.attempts import PASSWORD_GUESSES, SIGN_UPS, limit_attempts
from backoffice.conventions import no_content
from backoffice.guards import authenticated, caller_if_any, current_principal
from backoffice.openapi import OPTIONAL_AUTH, problem_responses
from backoffice.output import Blueprint
from backoffice.users import service
from backoffice.users.schemas import UserIn, UserList, UserOut, UserPatch, UserQuery

bp = Blueprint("users", __name__, tag="Users")
SELF_SERVICE = [bp.auth_required(authenticated, roles=["users"])]

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


class UserCollection(MethodView):
    """`{prefix}/users`: sign-up, and every user (admins)."""

    @bp.auth_required(authenticated, optional=True)  # type: ignore[arg-type]  # typed str
    @limit_attempts(SIGN_UPS, exempt=_by_an_admin)
    @bp.input(UserIn, arg_name="new_user")
    @bp.output(UserOut, status_code=201)
    @bp.doc(
        operation_id="create_user",
        responses=problem_responses(400, 401, 403, 409, 415, 422, 429),
        extensions=OPTIONAL_AUTH,
    )
    def post(self, new_user: UserIn) -> Any:
        """Sign up (open registration), or create a user (admin, when REGISTRATION=admin)

        Sign-ups are limited per client IP (`SIGNUP_RATE_LIMIT`); admins are not limited.
        """
        user = service.sign_up(new_user.name, new_user.email, new_user.password, _caller())
        return user, 201, {"Location": url_for(".user", user_id=user.id)}

    @bp.auth_required(authenticated, roles=["admin"])
    @bp.input(UserQuery, location="query", arg_name="query")
    @bp.output(UserList)
    @bp.doc(operation_id="list_users", responses=problem_responses(400, 401, 403))
    def get(self, query: UserQuery) -> Any:
        """List users (admin), newest first; filter by `active` and `role`"""
        return service.list_users(query.limit, query.cursor, query.active, query.role)


class Me(MethodView):
    """`{prefix}/users/me`: the caller."""

    decorators = SELF_SERVICE

    @bp.output(UserOut)
    @bp.doc(operation_id="get_me")
    def get(self) -> Any:
        """The caller's own user"""
        return service.get_user(current_principal().user_id)

    @limit_attempts(PASSWORD_GUESSES, exempt=_checks_no_password)
    @bp.input(UserPatch, arg_name="patch")
    @bp.output(UserOut)
    @bp.doc(operation_id="update_me", responses={**WRITE_ERRORS, **problem_responses(429)})
    def patch(self, patch: UserPatch) -> Any:
        """Change yourself; a new `password` or `email` needs your `current_password`

        Only an admin changes `role` or `active`. A missing or wrong `current_password` is
        422 (nothing changes), and a wrong one counts as a failed login. A new password or
        a deactivation ends every token you hold. No change may leave the service without
        an active admin (409)."""
        caller = current_principal()
        return service.update_user(caller.user_id, patch.changes(), caller)

    @bp.doc(
        operation_id="delete_me",
        responses={204: "Deleted", **problem_responses(400, 401, 403, 409)},
    )
    def delete(self) -> Response:
        """Delete yourself: your tokens and keys end

        The last active admin cannot be deleted (409)."""
        caller = current_principal()
        service.delete_user(caller.user_id, caller)
        return no_content()


class UserResource(MethodView):
    """`{prefix}/users/<id>`: yourself, or anyone for an admin."""

    decorators = SELF_SERVICE

    @bp.output(UserOut)
    @bp.doc(operation_id="get_user", responses=problem_responses(400, 401, 403, 404))
    def get(self, user_id: uuid.UUID) -> Any:
        """One user: yourself, or anyone for an admin"""
        return service.visible_user(user_id, current_principal())

    @limit_attempts(PASSWORD_GUESSES, exempt=_checks_no_password)
    @bp.input(UserPatch, arg_name="patch")
    @bp.output(UserOut)
    @bp.doc(operation_id="update_user", responses={**WRITE_ERRORS, **problem_responses(429)})
    def patch(self, user_id: uuid.UUID, patch: UserPatch) -> Any:
        """Change a user; only an admin changes `role` or `active`

        Your own new `password` or `email` needs your `current_password` (422 if missing or
        wrong; wrong ones count as failed logins); an admin changing someone else's does
        not. A new password or a deactivation ends every token the user holds; a
        deactivation ends their API keys too, for good. No change may leave the service
        without an active admin (409)."""
        return service.update_user(user_id, patch.changes(), current_principal())

    @bp.doc(
        operation_id="delete_user",
        responses={204: "Deleted", **problem_responses(400, 401, 403, 404, 409)},
    )
    def delete(self, user_id: uuid.UUID) -> Response:
        """Delete a user (yourself, or anyone for an admin): their tokens and keys end

        The last active admin cannot be deleted (409)."""
        service.delete_user(user_id, current_principal())
        return no_content()


bp.add_url_rule("/users", view_func=UserCollection.as_view("users"))
bp.add_url_rule("/users/me", view_func=Me.as_view("me"))
bp.add_url_rule("/users/<uuid:user_id>", view_func=UserResource.as_view("user"))
