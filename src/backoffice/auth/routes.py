from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, url_for

from backoffice.auth import service
from backoffice.auth.guards import bearer, current_principal, refresh_bearer
from backoffice.auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyList,
    ApiKeyOut,
    LogoutIn,
    TokenOut,
    TokenRequest,
)
from backoffice.conventions import no_content
from backoffice.extensions import limiter
from backoffice.openapi import problem_responses

bp = APIBlueprint("auth", __name__, tag="Auth")


def _login_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


def _failed(response: Response) -> bool:
    return response.status_code == 401


@bp.post("/auth/token")
@limiter.limit(_login_limit, deduct_when=_failed)
@bp.input(TokenRequest, location="json_or_form", arg_name="credentials")
@bp.output(TokenOut)
@bp.doc(responses=problem_responses(400, 401, 415, 422, 429))
def issue_token(credentials: TokenRequest) -> Any:
    """Log in: trade an email and password for tokens

    Failed attempts are limited per client IP (`LOGIN_RATE_LIMIT`, 5 per minute by
    default); past the limit every attempt is 429 with `Retry-After`.
    """
    return service.login(credentials.email, credentials.password)


@bp.post("/auth/refresh")
@bp.auth_required(refresh_bearer)
@bp.output(TokenOut)
def refresh_token() -> Any:
    """Trade a refresh token (sent as the bearer token) for new tokens; it is spent"""
    return service.refresh(current_principal())


@bp.post("/auth/logout")
@bp.auth_required(bearer)
@bp.input(LogoutIn, arg_name="body")
@bp.doc(responses={204: "Logged out", **problem_responses(400, 401, 422)})
def logout(body: LogoutIn) -> Response:
    """Revoke this access token (and the refresh token, when sent) in every worker"""
    principal = current_principal()
    if body.refresh_token is not None:
        service.revoke_refresh_token(body.refresh_token, principal.user_id)
    service.revoke(principal.claims)
    return no_content()


@bp.post("/auth/api-keys")
@bp.auth_required(bearer)
@bp.input(ApiKeyIn, arg_name="new_key")
@bp.output(ApiKeyCreated, status_code=201)
@bp.doc(responses=problem_responses(400, 401, 403, 415, 422))
def create_api_key(new_key: ApiKeyIn) -> Any:
    """Create an API key (its secret is in this answer only)"""
    api_key, secret = service.create_api_key(
        current_principal(), new_key.name, new_key.scopes, new_key.expires_at
    )
    body = ApiKeyOut.model_validate(api_key).model_dump() | {"key": secret}
    return body, 201, {"Location": url_for(".list_api_keys")}


@bp.get("/auth/api-keys")
@bp.auth_required(bearer)
@bp.output(ApiKeyList)
def list_api_keys() -> Any:
    """List your live API keys (never their secrets)"""
    return {"data": service.list_api_keys(current_principal().user_id)}


@bp.delete("/auth/api-keys/<uuid:key_id>")
@bp.auth_required(bearer)
@bp.doc(responses={204: "Revoked", **problem_responses(400, 401, 404)})
def revoke_api_key(key_id: uuid.UUID) -> Response:
    """Revoke one of your API keys"""
    service.revoke_api_key(key_id, current_principal().user_id)
    return no_content()
