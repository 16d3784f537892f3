"""Which proxies the app believes: the `X-Forwarded-*` headers of the configured number of
hops (none by default), through Werkzeug's ProxyFix."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

#: The schemes a forwarded `X-Forwarded-Proto` may make the request's.
SCHEMES = frozenset({"http", "https"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _keep_http_schemes(app: WSGIApp) -> WSGIApp:
    """Behind ProxyFix: a forwarded scheme other than http or https is ignored (the
    request keeps the scheme it arrived with). A client that reaches the server directly
    could otherwise name any scheme, `javascript` say, and see it in the links the app
    builds. ProxyFix keeps the original values in `werkzeug.proxy_fix.orig` (documented)."""

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["wsgi.url_scheme"] not in SCHEMES:
            environ["wsgi.url_scheme"] = environ["werkzeug.proxy_fix.orig"]["wsgi.url_scheme"]
        return app(environ, start_response)

    return checked


def trust_proxies(app: Flask) -> None:
    """Read the client's address, scheme, host and port from the `X-Forwarded-*` headers
    the configured number of proxies set (none by default): links and the OpenAPI
    `servers` then name the address the client used, port included. The host is still
    checked against TRUSTED_HOSTS, and the scheme is http or https."""
    config = app.config
    hops = [config[f"PROXY_FIX_X_{name}"] for name in ("FOR", "PROTO", "HOST", "PORT")]
    if any(hops):
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            _keep_http_schemes(app.wsgi_app),
            x_for=config["PROXY_FIX_X_FOR"],
            x_proto=config["PROXY_FIX_X_PROTO"],
            x_host=config["PROXY_FIX_X_HOST"],
            x_port=config["PROXY_FIX_X_PORT"],
        )
