"""Users (admins): filter by active and role, create, change role, deactivate and
reactivate, all through `users.service`, whose rules (never no active admin, a
deactivation ending every session and key) the pages show when they refuse."""

from __future__ import annotations

import uuid
from typing import Any

from flask import render_template, request
from pydantic import ValidationError

from backoffice.console.pages import (
    admin_only,
    audit,
    back_to,
    bp,
    cursor_arg,
    field_errors,
    operator,
    page_limit,
)
from backoffice.errors import APIError, Conflict
from backoffice.users import service as users
from backoffice.users.schemas import UserIn, UserPatch, UserQuery

MESSAGES = {
    "created": "The user was created.",
    "role": "The role was changed; that person's console sessions ended.",
    "deactivated": "The user was deactivated: their sessions and API keys ended.",
    "reactivated": "The user was reactivated.",
}
#: The `active` filter as the list's form sends it.
ACTIVE = {"active": True, "inactive": False}


@bp.get("/users")
@admin_only
def user_list() -> Any:
    shown, role = request.args.get("show", ""), request.args.get("role") or None
    try:
        query = UserQuery.model_validate(
            {"role": role, "active": ACTIVE.get(shown)}
            | {"cursor": cursor_arg(), "limit": page_limit()}
        )
    except ValidationError as error:
        errors = field_errors(error)
        html = render_template(
            "console/users.html", page=None, filters={}, roles=users.ROLES, errors=errors
        )
        return html, 400
    return render_template(
        "console/users.html",
        page=users.list_users(query.limit, query.cursor, query.active, query.role),
        filters={"show": shown if shown in ACTIVE else None, "role": role},
        roles=users.ROLES,
        message=MESSAGES.get(request.args.get("done", "")),
    )


@bp.get("/users/new")
@admin_only
def user_new() -> Any:
    return _new_user_page({}, {}, 200)


def _new_user_page(form: dict[str, str], errors: dict[str, str], status: int) -> Any:
    shown = {key: value for key, value in form.items() if key != "password"}  # never echoed
    page = render_template("console/user_new.html", form=shown, errors=errors, roles=users.ROLES)
    return page, status


def _validated(form: dict[str, str]) -> tuple[UserIn | None, UserPatch | None, dict[str, str]]:
    """The new user and their role as the API's input models read them, or what is wrong."""
    new = role = None
    errors: dict[str, str] = {}
    try:
        new = UserIn.model_validate({key: form[key] for key in ("name", "email", "password")})
    except ValidationError as error:
        errors |= field_errors(error)
    try:
        role = UserPatch.model_validate({"role": form["role"]})
    except ValidationError as error:
        errors |= field_errors(error)
    return new, role, errors


@bp.post("/users")
@admin_only
def user_create() -> Any:
    form = {key: request.form.get(key, "") for key in ("name", "email", "password", "role")}
    new, role, errors = _validated(form)
    if new is None or role is None or role.role is None:
        return _new_user_page(form, errors, 422)
    try:
        user = users.create_user(new.name, new.email, new.password, role.role)
    except Conflict as error:
        return _new_user_page(form, {"email": error.detail}, 409)
    audit("user.create", user=str(user.id), role=user.role)
    return back_to("console.user_detail", "created", user_id=user.id)


def _user_page(user_id: uuid.UUID, status: int = 200, **context: Any) -> Any:
    user = users.visible_user(user_id, operator())
    page = render_template(
        "console/user.html",
        user=user,
        roles=users.ROLES,
        errors=context.pop("errors", {}),
        message=MESSAGES.get(request.args.get("done", "")),
        **context,
    )
    return page, status


@bp.get("/users/<uuid:user_id>")
@admin_only
def user_detail(user_id: uuid.UUID) -> Any:
    return _user_page(user_id)


@bp.post("/users/<uuid:user_id>/role")
@admin_only
def user_role(user_id: uuid.UUID) -> Any:
    """A new role ends the person's console sessions (what they may see changed)."""
    try:
        patch = UserPatch.model_validate({"role": request.form.get("role", "")})
    except ValidationError as error:
        return _user_page(user_id, 422, errors=field_errors(error))
    try:
        users.update_user(user_id, patch.changes(), operator())
    except APIError as error:
        return _user_page(user_id, error.status, refusal=error.detail)
    audit("user.role", user=str(user_id), role=patch.role)
    return back_to("console.user_detail", "role", user_id=user_id)


@bp.post("/users/<uuid:user_id>/active")
@admin_only
def user_active(user_id: uuid.UUID) -> Any:
    """Deactivate (every session and key of theirs ends) or reactivate someone."""
    active = request.form.get("active") == "true"
    try:
        users.update_user(user_id, {"active": active}, operator())
    except APIError as error:
        return _user_page(user_id, error.status, refusal=error.detail)
    audit("user.reactivate" if active else "user.deactivate", user=str(user_id))
    return back_to(
        "console.user_detail", "reactivated" if active else "deactivated", user_id=user_id
    )
