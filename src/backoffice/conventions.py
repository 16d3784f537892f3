"""The HTTP conventions of the contract (§1) that every resource shares.

- a view that declares a JSON body gets one: 415 for another Content-Type, 400 for
  malformed JSON or a JSON value that is not an object;
- a body that did not arrive within BODY_READ_TIMEOUT (the server's front says so) is a
  408, and the connection is closed;
- a request whose lane of threads was full (the server's front says so) is a 503
  `server-busy` with `Retry-After`, at once;
- a method is spelled in capitals, as HTTP defines it: `get` is not `GET` (405);
- a body is never longer than MAX_CONTENT_LENGTH, whether its length was announced or it
  was streamed (chunked): 413 either way;
- a header holding U+0000 (NUL), which PostgreSQL cannot store or compare, is a 400
  (query strings and bodies: every input schema refuses it, see `schemas.InputModel`);
- a request of a safe method (GET, HEAD, OPTIONS) reads without a transaction
  (`database.reads_only`): no BEGIN and ROLLBACK round trips for what changes nothing;
- `<uuid:...>` path segments that are not UUIDs are a 400, not a confusing 404;
- ETags derived from a row's version, for `If-None-Match`, and `If-Match` turned back
  into the version a service expects (`expected_version`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from flask import Flask, Request, Response, current_app, g, request
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest
from werkzeug.exceptions import MethodNotAllowed, RequestEntityTooLarge
from werkzeug.http import quote_etag
from werkzeug.routing import BaseConverter

from backoffice.database import reads_only
from backoffice.errors import BadRequest, RequestTimeout, ServerBusy, UnsupportedMediaType
from backoffice.framework_internals import declared_view_spec
from backoffice.serving import BODY_TIMED_OUT, LANE_FULL, UNREADABLE_HEADER
from backoffice.storable import NUL

#: Requests that by HTTP's rules change nothing (RFC 9110 §9.2.1).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Where a safe request keeps its `reads_only()` until the request's teardown.
_READS_ONLY = "_reads_only"

#: What an `If-Match` naming no version of the resource becomes. Versions start at 1, so
#: the service still answers 404 for a missing resource, then refuses the write (412).
NO_SUCH_VERSION = 0


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


def _declared_body_types(incoming: Request) -> list[str]:
    """The media types the view's `@bp.input` declares for its body ([] when it has none)."""
    view = current_app.view_functions.get(incoming.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, incoming.method.lower(), None)
    spec = declared_view_spec(view)
    if spec.get("body") is None:
        return []
    declared = spec.get("content_type") or []
    return [declared] if isinstance(declared, str) else list(declared)


def before_view() -> None:
    """Every request, before its view: a safe request's reads put in autocommit, then the
    checks of `REQUEST_CHECKS`, in order. One hook, with `request` looked up once: Flask's
    dispatch of a hook, and each lookup through the `request` proxy, cost more than most
    of these checks do themselves."""
    incoming: Request = request._get_current_object()  # type: ignore[attr-defined]
    read_safe_requests_in_autocommit(incoming)
    for check in REQUEST_CHECKS:
        check(incoming)


def read_safe_requests_in_autocommit(incoming: Request) -> None:
    """A safe request's reads run in autocommit, until its teardown (`database.reads_only`).

    Opened before the conventions' checks (none of them reads the database) and closed at
    teardown, which Flask runs on every way out of a request (an error included) in the
    thread that served it: the next request that thread serves starts without it.
    """
    if incoming.method in SAFE_METHODS:
        stack = ExitStack()
        stack.enter_context(reads_only())
        setattr(g, _READS_ONLY, stack)


def end_reads_only(_error: BaseException | None) -> None:
    """Teardown: the request's `reads_only()` ends (when it had one)."""
    stack: ExitStack | None = g.pop(_READS_ONLY, None)
    if stack is not None:
        stack.close()


def refuse_incomplete_body(incoming: Request) -> None:
    """The server's front gave up waiting for the body (`backoffice.serving`): 408, and
    the connection is not used again (the rest of the body may still be on its way)."""
    seconds = incoming.environ.get(BODY_TIMED_OUT)
    if seconds is not None:
        raise RequestTimeout(f"The request body did not arrive within {seconds:g} seconds.")


def refuse_past_a_full_lane(incoming: Request) -> None:
    """The server's front found no room on the request's lane (`serving.Lane`): it is run
    on the shared threads only to be refused, 503 with `Retry-After`, logged and counted
    like any answer."""
    lane = incoming.environ.get(LANE_FULL)
    if lane is not None:
        raise ServerBusy(lane)


def refuse_lowercase_method(incoming: Request) -> None:
    """Werkzeug upper-cases the method it is given, so `get` would be served as `GET`;
    HTTP methods are case-sensitive, and no method of this API is spelled that way."""
    method = incoming.environ.get("REQUEST_METHOD", "")
    if method != incoming.method and incoming.routing_exception is None:
        adapter = current_app.url_map.bind_to_environ(incoming.environ)
        raise MethodNotAllowed(valid_methods=sorted(adapter.allowed_methods()))


def refuse_nul_in_headers(incoming: Request) -> None:
    """A header holding U+0000 is malformed: 400, before any view looks anything up by it
    (an API key, say). Query strings and bodies are checked by their schemas. So is one the
    server's front could not read as text (`serving.UNREADABLE_HEADER`): acting as if it
    had not been sent (an `Idempotency-Key`, say) would be wrong."""
    environ = incoming.environ
    unreadable = environ.get(UNREADABLE_HEADER)
    if unreadable is not None:
        raise BadRequest(f"The {unreadable} header holds characters other than visible ASCII.")
    for key, value in environ.items():
        header = key in _HEADER_KEYS or key.startswith("HTTP_")
        if header and isinstance(value, str) and NUL in value:
            name = key.removeprefix("HTTP_").replace("_", "-").title()
            raise BadRequest(f"The {name} header holds U+0000 (NUL), which is never accepted.")


def read_streamed_body(incoming: Request) -> None:
    """Read a body of unannounced length (chunked) now, and refuse one that is too long.

    Werkzeug stops reading such a body at MAX_CONTENT_LENGTH bytes and hands over what it
    read, so a body over the limit would be cut short and parsed (400 "not valid JSON")
    instead of refused (413, as it is when Content-Length announces it). Whoever reads the
    body later gets these cached bytes.
    """
    if incoming.method in SAFE_METHODS or incoming.content_length is not None:
        return  # no body, or an announced one (Werkzeug checks it against the limit)
    if not incoming.environ.get("wsgi.input_terminated"):
        return  # the server does not stream bodies: Werkzeug reads none
    body = incoming.get_data(cache=True)
    limit = incoming.max_content_length
    if limit is not None and len(body) >= limit and incoming.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def require_json_object(incoming: Request) -> None:
    """Before a view with a JSON body runs, make sure there is one."""
    if incoming.method not in {"POST", "PUT", "PATCH"}:
        return
    accepted = _declared_body_types(incoming)
    if "application/json" not in accepted:
        return
    if incoming.mimetype in accepted and not incoming.is_json:
        return  # a form, where the view also takes one (OAuth2's token request)
    if not incoming.is_json:
        if not incoming.content_length and not incoming.content_type:
            raise BadRequest("This endpoint needs a JSON object as the request body.")
        raise UnsupportedMediaType(
            f"Send the body as application/json, not {incoming.mimetype or 'no content type'}."
        )
    try:
        body = incoming.get_json()
    except WerkzeugBadRequest:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")


#: What every request must pass before its view runs, in this order (`before_view`).
REQUEST_CHECKS: tuple[Callable[[Request], None], ...] = (
    refuse_incomplete_body,
    refuse_past_a_full_lane,
    refuse_lowercase_method,
    refuse_nul_in_headers,
    read_streamed_body,
    require_json_object,
)
#: The environ's header keys without the `HTTP_` prefix (PEP 3333).
_HEADER_KEYS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


def etag_for(resource_id: uuid.UUID, version: int) -> str:
    """`<version>-<tag>`: a strong validator that changes whenever the row does.

    The version is in the clear so `If-Match` can be turned back into it; the tag, a hash
    of `id:version` keyed with the app's secret, ties it to this resource, so an ETag of
    another resource, or a made-up one, never matches. A new SECRET_KEY changes every ETag
    (clients holding old ones GET again: one 412, or one full 200 instead of a 304).
    """
    tag = hashlib.blake2b(f"{resource_id}:{version}".encode(), key=_etag_key(), digest_size=8)
    return f"{version}-{tag.hexdigest()}"


def _etag_key() -> bytes:
    """A key for ETags only, derived from SECRET_KEY (blake2b keys are at most 64 bytes)."""
    secret: str | bytes = current_app.config["SECRET_KEY"]
    return _derived_etag_key(secret.encode() if isinstance(secret, str) else secret)


@functools.lru_cache(maxsize=4)
def _derived_etag_key(secret: bytes) -> bytes:
    """Derived once per secret, not on every ETag of every request."""
    return hashlib.blake2b(secret, digest_size=32, person=b"backoffice-etag").digest()


def _version_in(etag: str, resource_id: uuid.UUID) -> int | None:
    """The version `etag` names, if it is a genuine ETag of this resource; else None."""
    version = etag.partition("-")[0]
    if not (version.isascii() and version.isdigit()) or len(version) > 18:
        return None
    expected = etag_for(resource_id, int(version))
    return int(version) if hmac.compare_digest(etag.encode(), expected.encode()) else None


def expected_version(resource_id: uuid.UUID) -> int | None:
    """The version a write must find, from the request's `If-Match` (None: no condition).

    `*` only asks that the resource exist: None. Weak ETags never match (If-Match compares
    strongly). Of several ETags, the highest genuine version of this resource is expected:
    tags are keyed, so a client only holds versions that existed, and if any of them is
    current, the highest is. A value naming no version of it (another resource's ETag, a
    forged or garbled one) is `NO_SUCH_VERSION`, so the write fails with 412, not 500.
    """
    if "If-Match" not in request.headers:
        return None
    if_match = request.if_match
    if if_match.star_tag:
        return None
    # An empty tag (`""`) parses as None: it names no version.
    versions = (_version_in(etag, resource_id) for etag in if_match.as_set() if etag)
    return max((version for version in versions if version is not None), default=NO_SUCH_VERSION)


def no_content() -> Response:
    """204: no body, so no Content-Type either."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def etag_header(etag: str) -> dict[str, str]:
    return {"ETag": quote_etag(etag)}


def not_modified(etag: str) -> Response | None:
    """A 304 when the client's `If-None-Match` already names this version."""
    if "HTTP_IF_NONE_MATCH" not in request.environ:
        return None  # most reads: nothing to parse
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304)
        response.set_etag(etag)
        return response
    return None


def init_conventions(app: Flask) -> None:
    app.url_map.converters["uuid"] = StrictUUIDConverter
    app.before_request(before_view)
    app.teardown_request(end_reads_only)
