"""API keys: your own. Create one (name, scopes, optional expiry), shown once on the page
answering the form and never again; revoke. The console session is a person's session, so
it may create keys as a person's bearer token may (`auth.service` decides what is allowed).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import render_template, request
from pydantic import ValidationError

from backoffice.auth import service as auth
from backoffice.auth.schemas import ApiKeyIn, ApiKeyQuery
from backoffice.console.pages import (
    audit,
    back_to,
    bp,
    cursor_arg,
    field_errors,
    operator,
    page_limit,
)
from backoffice.errors import BadRequest, Conflict, ValidationFailed
from backoffice.principal import SCOPE_DESCRIPTIONS, scopes_for

MESSAGES = {"revoked": "The key was revoked: it no longer opens anything."}


def _key_form() -> dict[str, Any]:
    """The form as the API's input model reads it: a `datetime-local` expiry is UTC."""
    expires = request.form.get("expires_at", "").strip()
    return {
        "name": request.form.get("name", ""),
        "scopes": request.form.getlist("scopes"),
        "expires_at": f"{expires}Z" if expires and expires[-1].isdigit() else expires or None,
    }


def _keys_page(status: int = 200, **context: Any) -> Any:
    """Your live keys, and the form to make one (as sent, when it was refused)."""
    try:
        query = ApiKeyQuery.model_validate({"cursor": cursor_arg(), "limit": page_limit()})
    except ValidationError:
        raise BadRequest("That page link is not valid: start again from the first page.") from None
    allowed = sorted(scopes_for(operator().principal.role))
    page = render_template(
        "console/keys.html",
        page=auth.list_api_keys(operator().user_id, query.limit, query.cursor),
        scopes=[(scope, SCOPE_DESCRIPTIONS[scope]) for scope in allowed],
        key_prefix=auth.KEY_PREFIX,
        form=context.pop("form", {"scopes": [s for s in allowed if s != "admin"]}),
        errors=context.pop("errors", {}),
        message=MESSAGES.get(request.args.get("done", "")),
        **context,
    )
    return page, status


@bp.get("/keys")
def key_list() -> Any:
    return _keys_page()


@bp.post("/keys")
def key_create() -> Any:
    """The new key's secret is in this answer only (no redirect; no-store like every page)."""
    form = _key_form()
    try:
        new = ApiKeyIn.model_validate(form)
        created = auth.create_api_key(operator().principal, new.name, new.scopes, new.expires_at)
    except ValidationError as error:
        return _keys_page(422, form=form, errors=field_errors(error))
    except (ValidationFailed, Conflict) as error:
        return _keys_page(error.status, form=form, errors=field_errors(error))
    audit("api_key.create", key=str(created.id), scopes=created.scopes)
    return _keys_page(201, created=created)


@bp.post("/keys/<uuid:key_id>/revoke")
def key_revoke(key_id: uuid.UUID) -> Any:
    auth.revoke_api_key(key_id, operator().user_id)
    audit("api_key.revoke", key=str(key_id))
    return back_to("console.key_list", "revoked")
