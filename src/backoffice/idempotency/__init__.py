"""`@idempotent`: the `Idempotency-Key` header for creating endpoints (contract §1)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

import orjson
from flask import Response, current_app, g, request

from backoffice.errors import BadRequest
from backoffice.idempotency import service

HEADER = "Idempotency-Key"
_SANE_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

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
    """Replay the first answer to a retried request that carries the same key and body."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not _SANE_KEY.match(key):
            raise BadRequest(
                f"{HEADER} must be 1-255 visible ASCII characters.",
                errors=[{"field": HEADER, "message": "invalid key"}],
            )
        principal = str(g.get("user_id") or "")
        ttl = current_app.config["IDEMPOTENCY_TTL_SECONDS"]
        stored = service.claim(principal, key, request_fingerprint(), ttl)
        if stored is not None:
            replay = Response(stored.body, status=stored.status_code, headers=stored.headers)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException:
            service.release(principal, key)
            raise
        if 200 <= response.status_code < 300:
            headers = {
                h: response.headers[h] for h in service.REPLAYED_HEADERS if h in response.headers
            }
            service.complete(
                principal,
                key,
                service.StoredResponse(response.status_code, headers, response.get_data()),
            )
        else:
            service.release(principal, key)
        return response

    return cast(F, wrapper)
