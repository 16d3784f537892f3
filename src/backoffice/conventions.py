"""The HTTP conventions of the contract (§1) that every resource shares.

- a view that declares a JSON body gets one: 415 for another Content-Type, 400 for
  malformed JSON or a JSON value that is not an object;
- `<uuid:...>` path segments that are not UUIDs are a 400, not a confusing 404;
- ETags derived from a row's version, for `If-None-Match` and `If-Match`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from flask import Flask, Response, current_app, request
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.datastructures import ETags
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest
from werkzeug.http import quote_etag
from werkzeug.routing import BaseConverter

from backoffice.errors import BadRequest, Conflict, PreconditionFailed, UnsupportedMediaType
from backoffice.extensions import db


class StrictUUIDConverter(BaseConverter):
    """Matches any segment, so a malformed id answers 400 instead of "no such route"."""

    regex = r"[^/]+"

    def to_python(self, value: str) -> uuid.UUID:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise WerkzeugBadRequest(f"{value!r} is not a valid id: ids are UUIDs.") from None

    def to_url(self, value: Any) -> str:
        return str(value)


def _declared_body_types() -> list[str]:
    """The media types the view's `@bp.input` declares for its body ([] when it has none)."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, request.method.lower(), None)
    spec = getattr(view, "_spec", None) or {}
    if spec.get("body") is None:
        return []
    declared = spec.get("content_type") or []
    return [declared] if isinstance(declared, str) else list(declared)


def require_json_object() -> None:
    """Before a view with a JSON body runs, make sure there is one."""
    if request.method not in {"POST", "PUT", "PATCH"}:
        return
    accepted = _declared_body_types()
    if "application/json" not in accepted:
        return
    if request.mimetype in accepted and not request.is_json:
        return  # a form, where the view also takes one (OAuth2's token request)
    if not request.is_json:
        if not request.content_length and not request.content_type:
            raise BadRequest("This endpoint needs a JSON object as the request body.")
        raise UnsupportedMediaType(
            f"Send the body as application/json, not {request.mimetype or 'no content type'}."
        )
    try:
        body = request.get_json()
    except WerkzeugBadRequest:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")


def etag_for(resource_id: uuid.UUID, version: int) -> str:
    """An opaque strong validator that changes whenever the row does."""
    return hashlib.blake2b(f"{resource_id}:{version}".encode(), digest_size=10).hexdigest()


def no_content() -> Response:
    """204: no body, so no Content-Type either."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def etag_header(etag: str) -> dict[str, str]:
    return {"ETag": quote_etag(etag)}


def not_modified(etag: str) -> Response | None:
    """A 304 when the client's `If-None-Match` already names this version."""
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304)
        response.set_etag(etag)
        return response
    return None


def check_if_match(if_match: ETags, etag: str) -> None:
    """Raise 412 when the client holds a stale representation (no header: no check)."""
    if if_match and not if_match.contains(etag):
        raise PreconditionFailed(
            "The resource has changed since you read it: GET it again and resend with its "
            "current ETag."
        )


def commit_versioned(resource: str, if_match: ETags) -> None:
    """Commit a change to a versioned row (`version_id_col`).

    A concurrent writer that committed first makes our versioned UPDATE or DELETE miss:
    412 when the client sent If-Match (its version is gone), 409 otherwise.
    """
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        if if_match:
            raise PreconditionFailed(
                f"The {resource} changed while this request was being applied: GET it again."
            ) from None
        raise Conflict(
            f"The {resource} was changed by another request at the same time; retry."
        ) from None


def init_conventions(app: Flask) -> None:
    app.url_map.converters["uuid"] = StrictUUIDConverter
    app.before_request(require_json_object)
