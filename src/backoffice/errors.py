"""The problem-details layer (RFC 9457).

Services raise `APIError` subclasses, or a domain error whose status depends on the
request (`StaleVersion`); Werkzeug raises its own HTTP exceptions; the schema layer
raises validation errors; anything else is a bug. Every one of them leaves through
`problem()` as `application/problem+json`, with the request id, and with the headers
the status needs (`Allow`, `WWW-Authenticate`, `Retry-After`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import Response, current_app, g, request
from flask_limiter import RateLimitExceeded
from sqlalchemy.exc import StatementError
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from backoffice.error_reporting import report
from backoffice.extensions import limiter
from backoffice.framework_internals import is_validation_error

log = structlog.get_logger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"

#: Query and path parameters that fail validation are a malformed request (400);
#: a body that parses but breaks the schema is 422.
MALFORMED_LOCATIONS = frozenset({"query", "querystring", "path", "view_args", "headers"})


class APIError(Exception):
    """An error the client can act on. Subclasses fix the status and the problem type,
    and the headers the status needs: how to authenticate (`challenge`, a 401's
    `WWW-Authenticate`), when to come back (`retry_after` seconds, for 429 and 503). Who
    raises one says what happened, never which headers that takes."""

    status: int = 500
    slug: str = "internal-error"
    #: `WWW-Authenticate` (RFC 9110 §15.5.2: a 401 says how to authenticate).
    challenge: str | None = None
    #: `Retry-After`, in seconds (a call may give its own).
    retry_after: int | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Iterable[dict[str, str]] | None = None,
        retry_after: int | None = None,
        **extensions: Any,
    ) -> None:
        self.detail = detail or HTTPStatus(self.status).description
        self.errors = list(errors) if errors is not None else None
        self.headers: dict[str, str] = {}
        if self.challenge is not None:
            self.headers["WWW-Authenticate"] = self.challenge
        retry_after = retry_after if retry_after is not None else self.retry_after
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)
        self.extensions = extensions
        super().__init__(self.detail)


class BadRequest(APIError):
    status, slug = 400, "bad-request"


class Unauthorized(APIError):
    status, slug = 401, "unauthorized"
    challenge = 'Bearer realm="Authentication Required"'


class InvalidToken(Unauthorized):
    """A token that was valid once and is no more (spent, revoked, of an ended session)."""

    challenge = 'Bearer realm="Authentication Required", error="invalid_token"'


class Forbidden(APIError):
    status, slug = 403, "forbidden"


class NotFound(APIError):
    status, slug = 404, "not-found"

    def __init__(self, resource: str, resource_id: object) -> None:
        super().__init__(f"{resource} {resource_id} was not found")


class RequestTimeout(APIError):
    status, slug = 408, "request-timeout"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["Connection"] = "close"  # the rest of the body may still be coming


class Conflict(APIError):
    status, slug = 409, "conflict"


class PreconditionFailed(APIError):
    status, slug = 412, "precondition-failed"


class UnsupportedMediaType(APIError):
    status, slug = 415, "unsupported-media-type"


class ValidationFailed(APIError):
    status, slug = 422, "validation-failed"


class WrongPassword(ValidationFailed):
    """A password or email change whose `current_password` is not the current password: a
    failed password guess, limited per client address like failed logins."""


class PreconditionRequired(APIError):
    status, slug = 428, "precondition-required"


class TooManyRequests(APIError):
    status, slug = 429, "too-many-requests"
    retry_after = 1


class ServiceUnavailable(APIError):
    status, slug = 503, "service-unavailable"


class ServerBusy(ServiceUnavailable):
    """The server's front had no room left on the request's lane of threads
    (`serving.LANE_FULL`): nothing was done."""

    slug = "server-busy"
    retry_after = 1

    def __init__(self, lane: str) -> None:
        super().__init__(f"Too many {lane} requests are waiting on this server; retry shortly.")


class StaleVersion(Exception):
    """A write to a versioned row that is not at the version the caller expected.

    Either the row was already at another version when read (`raced=False`), or another
    writer committed first while the write was in flight (`raced=True`). A domain error,
    not an HTTP one: `handle_stale_version` answers 412 when the client made the write
    conditional with `If-Match`, 409 when it did not.
    """

    def __init__(self, resource: str, resource_id: object, *, raced: bool = False) -> None:
        self.resource = resource
        self.resource_id = resource_id
        self.raced = raced
        super().__init__(f"{resource} {resource_id} is not at the expected version")


def _slug(phrase: str) -> str:
    return phrase.lower().replace(" ", "-").replace("'", "")


#: The title of each problem type named after a status ("not-found": "Not Found").
_PHRASES = {_slug(status.phrase): status.phrase for status in HTTPStatus}


def title_for(slug: str) -> str:
    """The one title of the problem type `/problems/<slug>`, wherever it is raised.

    A type named after a status has that status's reason phrase; any other is its slug in
    words ("validation-failed": "Validation failed"). So a type never has two titles, and
    a new error class needs no table entry.
    """
    return _PHRASES.get(slug) or slug.replace("-", " ").capitalize()


def problem(
    status: int,
    *,
    slug: str | None = None,
    detail: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """Build the one response shape every error takes."""
    slug = slug or _slug(HTTPStatus(status).phrase)
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title_for(slug),
        "status": status,
        "detail": detail or HTTPStatus(status).description,
        "instance": request.path,
        "request_id": g.get("request_id"),
        **extensions,
    }
    if errors is not None:
        body["errors"] = errors
    response = current_app.response_class(
        current_app.json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE
    )
    response.headers.update(headers or {})
    return response


def _flatten(detail: Mapping[str, Any]) -> tuple[bool, list[dict[str, str]]]:
    """APIFlask's `{location: {field: [messages]}}` as `(malformed?, [{field, message}])`."""
    errors: list[dict[str, str]] = []
    malformed = False
    for location, fields in detail.items():
        malformed = malformed or location in MALFORMED_LOCATIONS
        for field, messages in fields.items():
            name = "" if field == "_schema" else field
            errors.extend({"field": name, "message": message} for message in messages)
    return malformed, errors


def handle_api_error(error: APIError) -> Response:
    return problem(
        error.status,
        slug=error.slug,
        detail=error.detail,
        errors=error.errors,
        headers=error.headers,
        **error.extensions,
    )


#: What a caller can do about an authentication (401) or authorization (403) failure.
AUTH_DETAILS = {
    401: "Send a valid access token (Authorization: Bearer <token>) or API key (X-API-Key).",
    403: "You are authenticated but not allowed to do this.",
}


def handle_apiflask_error(error: HTTPError) -> Response:
    """Errors APIFlask raises itself: schema validation, and 401/403 from the auth layer."""
    if not is_validation_error(error):
        slug = {401: "unauthorized", 403: "forbidden"}.get(error.status_code)
        return problem(
            error.status_code,
            slug=slug,
            detail=AUTH_DETAILS.get(error.status_code, str(error.message)),
            headers=dict(Headers(error.headers)),
        )
    malformed, errors = _flatten(error.detail)
    if malformed:
        return problem(
            400,
            slug="invalid-parameter",
            detail="One or more query or path parameters are invalid.",
            errors=errors,
        )
    return problem(
        422,
        slug="validation-failed",
        detail="The request body does not match the schema.",
        errors=errors,
    )


def handle_stale_version(error: StaleVersion) -> Response:
    """412 for a conditional write (`If-Match` sent, even one naming no version), else 409."""
    if "If-Match" not in request.headers:
        detail = f"The {error.resource} was changed by another request at the same time; retry."
        return handle_api_error(Conflict(detail))
    if error.raced:
        detail = f"The {error.resource} changed while this request was being applied: GET it again."
    else:
        detail = (
            f"The {error.resource} has changed since you read it: GET it again and resend with "
            "its current ETag."
        )
    return handle_api_error(PreconditionFailed(detail))


def handle_http_exception(error: HTTPException) -> Response | HTTPException:
    if error.code is None or error.code < 400:
        return error  # redirects (a missing trailing slash) are not problems
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    if error.response is not None:  # e.g. a 429 carrying its own Retry-After
        headers.update({k: v for k, v in error.response.headers if k.lower() == "retry-after"})
    if isinstance(error, RateLimitExceeded):
        headers["Retry-After"] = str(_until_window_resets())
    return problem(error.code, detail=error.description, headers=headers)


def _until_window_resets() -> int:
    """Whole seconds until the breached limit's window ends. (Flask-Limiter's own headers
    are off: it would put the window's end in the Retry-After of every answer of a limited
    view, a 503 `model-server-busy` or a 200 included.)"""
    current = limiter.current_limit
    if current is None:
        return 1
    return max(1, int(current.reset_at - time.time()))


class DatabaseErrorRedacted(Exception):
    """Stands in, in the log, for a database error whose message could quote request data."""


def _loggable(error: Exception) -> BaseException:
    """`error` as the log may show it.

    A database error's text quotes what it was given: SQLAlchemy appends the bound
    parameters (hidden by `hide_parameters`), and PostgreSQL's own message and DETAIL
    repeat values (`Key (email)=(...) already exists`, `invalid input syntax for type
    integer: "..."`). Request bodies never reach the log, so such an error is logged as its
    class, SQLSTATE, constraint and statement (placeholders only), with its traceback.
    """
    if not isinstance(error, StatementError):
        return error
    cause = error.orig
    diag = getattr(cause, "diag", None)
    facts = {
        "sqlstate": getattr(cause, "sqlstate", None),
        "constraint": getattr(diag, "constraint_name", None),
        "table": getattr(diag, "table_name", None),
        "column": getattr(diag, "column_name", None),
    }
    described = ", ".join(f"{name} {value}" for name, value in facts.items() if value)
    redacted = DatabaseErrorRedacted(
        f"{type(error).__name__} ({type(cause).__name__}{': ' + described if described else ''})"
        f" in: {error.statement}"
    )
    # The original's chain (its DBAPI cause) holds the same text: keep it out of the log.
    redacted.__suppress_context__ = True
    return redacted.with_traceback(error.__traceback__)


def handle_unexpected(error: Exception) -> Response:
    """A bug: the traceback goes to the log with the request id, nothing to the client."""
    loggable = _loggable(error)
    if loggable is error:
        log.exception("unhandled_exception", exc_type=type(error).__name__)
    else:
        log.error("unhandled_exception", exc_type=type(error).__name__, exc_info=loggable)
    report(loggable)
    return problem(500, detail="An unexpected error occurred. Quote the request id to support.")


def register_error_handlers(app: APIFlask) -> None:
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(StaleVersion, handle_stale_version)
    app.register_error_handler(HTTPError, handle_apiflask_error)
    # Flask-HTTPAuth's 401/403 reach APIFlask's error callback, not Flask's handlers.
    app.error_callback = handle_apiflask_error
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
