"""What browsers are told: CORS for the allowed origins, security headers on every answer.

- A CORS preflight (an `OPTIONS`, which the app class answers 204 with `Allow` and no
  body: `app.Backoffice`) from an origin in `CORS_ORIGINS` gets the `Access-Control-*`
  grants as well (Flask-CORS); one from any other origin gets none, so the browser
  refuses the call.
- Every answer, errors and 404s included, carries `X-Content-Type-Options: nosniff`,
  `Referrer-Policy: no-referrer` and a Content-Security-Policy: nothing may load for a
  JSON answer, while the docs page may load its own (offline) assets and run the inline
  script and style it is rendered with, named by their hashes.
- Answers to a request carrying credentials, and every answer of the auth endpoints
  (tokens), are `Cache-Control: no-store`.
- `Strict-Transport-Security` on answers to HTTPS requests when `HSTS_MAX_AGE` is set
  (behind a proxy, HTTPS as `X-Forwarded-Proto` says, when `PROXY_FIX_X_PROTO` trusts it).

Not flask-talisman: a few fixed headers and a CSP per endpoint are all we send, and its
defaults (HTTPS redirect, cookie rewriting) fight a TLS-terminating proxy
(docs/architecture/libraries.md).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from flask import Flask, Response, request
from flask_cors import CORS

#: What a browser app may send besides the CORS-safelisted headers.
ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "X-API-Key",
    "X-Request-ID",
]
#: What a browser app may read besides the CORS-safelisted response headers.
EXPOSED_HEADERS = ["ETag", "Idempotent-Replayed", "Link", "Location", "Retry-After", "X-Request-ID"]
ALLOWED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]

#: A request carrying one of these is authenticated (or trying to be): never cache its answer.
CREDENTIAL_HEADERS = ("Authorization", "X-API-Key")
#: Blueprints whose every answer holds or spends credentials (tokens).
CREDENTIAL_BLUEPRINTS = frozenset({"auth"})

#: A JSON answer loads nothing and may not be framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: The docs pages (Swagger UI, served by the app itself; see `openapi.init_openapi`).
DOCS_ENDPOINTS = frozenset({"openapi.docs", "openapi.swagger_ui_oauth_redirect"})
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def docs_csp(html: str) -> str:
    """A policy for a docs page: its own scripts, styles and images, the API it calls
    (same origin), and exactly the inline script and style it was rendered with."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            " ".join(["script-src 'self'", *hashes["script"]]),
            " ".join(["style-src 'self'", *hashes["style"]]),
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


#: Every answer's, unless its view said otherwise (a console page has its own policy).
_DEFAULTS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", API_CSP),
)
#: `CREDENTIAL_HEADERS` as the WSGI environ names them.
_CREDENTIAL_KEYS = tuple(f"HTTP_{name.upper().replace('-', '_')}" for name in CREDENTIAL_HEADERS)


def _security_headers(response: Response) -> Response:
    """On every answer. Runs on every request, so it looks at the headers once, and at the
    request's environ rather than its parsed headers."""
    current = request._get_current_object()  # type: ignore[attr-defined]
    headers = response.headers
    present = {name.lower() for name, _value in headers}
    if current.endpoint in DOCS_ENDPOINTS and response.mimetype == "text/html":
        headers["Content-Security-Policy"] = docs_csp(response.get_data(as_text=True))
        present.add("content-security-policy")
    for name, value in _DEFAULTS:
        if name.lower() not in present:
            headers.add(name, value)
    environ = current.environ
    if current.blueprint in CREDENTIAL_BLUEPRINTS or any(k in environ for k in _CREDENTIAL_KEYS):
        if "cache-control" in present:
            response.cache_control.no_store = True  # beside what the view says (SSE: no-cache)
        else:
            headers.add("Cache-Control", "no-store")
    return response


def _hsts(max_age: int) -> Callable[[Response], Response]:
    def add(response: Response) -> Response:
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", f"max-age={max_age}")
        return response

    return add


def _vary_on_origin(response: Response) -> Response:
    """The grants depend on `Origin`: caches must keep one answer per origin."""
    response.vary.add("Origin")
    return response


def init_browsers(app: Flask) -> None:
    app.after_request(_security_headers)
    if app.config["HSTS_MAX_AGE"]:
        app.after_request(_hsts(app.config["HSTS_MAX_AGE"]))
    origins = app.config["CORS_ORIGINS"]
    if not origins:
        return
    app.after_request(_vary_on_origin)
    CORS(
        app,
        origins=origins,
        methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        supports_credentials=app.config["CORS_ALLOW_CREDENTIALS"],
        max_age=app.config["CORS_MAX_AGE"],
        # Grant nothing to a request without `Origin` (not a browser's cross-origin call).
        always_send=False,
        send_wildcard=origins == ["*"],
        vary_header=False,  # `_vary_on_origin` says it on every answer, granted or not
        intercept_exceptions=False,  # error answers pass through after_request already
    )
