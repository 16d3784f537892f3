"""`@idempotent`: the `Idempotency-Key` header for creating endpoints (contract §1)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

import orjson
from flask import Response, current_app, request

from backoffice.errors import BadRequest
from backoffice.guards import current_principal
from backoffice.idempotency import service
from backoffice.transactions import commit, one_transaction

HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")

F = TypeVar("F", bound=Callable[..., Any])


def request_fingerprint() -> str:
    """The request's identity: method, path and body (JSON compared by value, not bytes)."""
    body = request.get_json(silent=True)
    canonical = (
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS) if body is not None else request.get_data()
    )
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def idempotent(view: F) -> F:
    """Replay the first answer to a retried request that carries the same key and body.

    Sits under the view's auth declaration: keys are scoped by the authenticated caller.
    The view's writes and the stored answer commit in one transaction (see
    `backoffice.idempotency.service`), so a crash anywhere leaves either both or neither.
    """

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not KEY_PATTERN.match(key):
            raise BadRequest(
                f"{HEADER} must be 1-255 visible ASCII characters.",
                errors=[{"field": HEADER, "message": "invalid key"}],
            )
        ttl = current_app.config["IDEMPOTENCY_TTL_SECONDS"]
        claimed = service.claim(str(current_principal().user_id), key, request_fingerprint(), ttl)
        if isinstance(claimed, service.StoredResponse):
            replay = Response(claimed.body, status=claimed.status_code, headers=claimed.headers)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        try:
            response = _create(claimed, view, *args, **kwargs)
        except BaseException:
            service.release(claimed)
            raise
        if not 200 <= response.status_code < 300:
            service.release(claimed)
        return response

    wrapper.takes_idempotency_key = True  # type: ignore[attr-defined]  # read by openapi
    return cast(F, wrapper)


def _create(
    claimed: service.Claim, view: Callable[..., Any], *args: Any, **kwargs: Any
) -> Response:
    """Run the view and store its answer in one transaction (rolled back unless 2xx)."""
    with one_transaction():
        service.hold(claimed)
        response = current_app.make_response(view(*args, **kwargs))
        if not 200 <= response.status_code < 300:
            return response
        headers = {
            h: response.headers[h] for h in service.REPLAYED_HEADERS if h in response.headers
        }
        stored = service.StoredResponse(response.status_code, headers, response.get_data())
        service.complete(claimed, stored)
    commit()
    return response
