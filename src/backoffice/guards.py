"""Who may call a view, declared on the view.

    @bp.get("/items")
    @bp.auth_required(authenticated, roles=["items"])   # any caller holding the scope
    @bp.auth_required(authenticated, roles=["admin"])   # admins only
    @bp.auth_required(bearer)                           # a person's token, not an API key

`authenticated` accepts `Authorization: Bearer <JWT>` or `X-API-Key: <key>`. No or bad
credentials: 401 with `WWW-Authenticate`; a known caller without the scope: 403. The
OpenAPI document lists both security schemes and the scopes per operation.

Shared by every capability's views, so it knows none of them: what a token or a key
stands for is asked of the `Verifiers` that `create_app()` registers (auth's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from apiflask import APIKeyHeaderAuth, HTTPTokenAuth, MultiAuth
from flask import Flask, current_app, g, request

from backoffice.errors import AUTH_DETAILS, Unauthorized
from backoffice.framework_internals import authenticated_user
from backoffice.principal import Principal

bearer = HTTPTokenAuth(
    scheme="Bearer",
    description="An access token from POST {prefix}/auth/token.",
    security_scheme_name="BearerAuth",
)
api_key = APIKeyHeaderAuth(
    name="X-API-Key",
    description="A key from POST {prefix}/auth/api-keys.",
    security_scheme_name="ApiKeyAuth",
)
#: Only for POST {prefix}/auth/refresh: accepts refresh tokens, nothing else.
refresh_bearer = HTTPTokenAuth(
    scheme="Bearer",
    description="A refresh token from POST {prefix}/auth/token: only POST "
    "{prefix}/auth/refresh takes it.",
    security_scheme_name="RefreshToken",
)
authenticated = MultiAuth(bearer, api_key)


@dataclass(frozen=True)
class Verifiers:
    """Who a credential stands for (None: nobody), one function per kind of credential."""

    access_token: Callable[[str], Principal | None]
    refresh_token: Callable[[str], Principal | None]
    api_key: Callable[[str], Principal | None]


def init_guards(app: Flask, verifiers: Verifiers) -> None:
    """Register how credentials are verified (from `create_app()`)."""
    app.extensions["verifiers"] = verifiers


def _verifiers() -> Verifiers:
    verifiers: Verifiers = current_app.extensions["verifiers"]
    return verifiers


def _remember(principal: Principal | None) -> Principal | None:
    if principal is not None:
        g.user_id = principal.user_id  # for the request log line
    return principal


def _verify_bearer(token: str) -> Principal | None:
    return _remember(_verifiers().access_token(token)) if token else None


def _verify_refresh(token: str) -> Principal | None:
    return _remember(_verifiers().refresh_token(token)) if token else None


def _verify_api_key(key: str) -> Principal | None:
    return _remember(_verifiers().api_key(key)) if key else None


def _roles(principal: Principal) -> list[str]:
    return principal.roles()


# Flask-HTTPAuth is untyped: register the callbacks by call, so they stay type-checked.
bearer.verify_token(_verify_bearer)
refresh_bearer.verify_token(_verify_refresh)
api_key.verify_token(_verify_api_key)
for _scheme in (bearer, refresh_bearer, api_key):
    _scheme.get_user_roles(_roles)


def current_principal() -> Principal:
    """The authenticated caller of this request (only inside a guarded view)."""
    principal: Principal = authenticated_user()
    return principal


def caller_if_any() -> Principal | None:
    """The caller of a view guarded with `optional=True`: None when the request carries no
    credentials at all, 401 when it carries bad ones (never treated as anonymous)."""
    principal: Principal | None = authenticated.current_user
    sent = request.headers.get("Authorization") or request.headers.get("X-API-Key")
    if principal is None and sent:
        raise Unauthorized(AUTH_DETAILS[401])
    return principal
