from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response, url_for

from backoffice.attempts import PASSWORD_GUESSES, limit_attempts
from backoffice.auth import service
from backoffice.auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyList,
    ApiKeyOut,
    ApiKeyQuery,
    TokenOut,
    TokenRequest,
)
from backoffice.conventions import no_content
from backoffice.guards import bearer, current_principal, refresh_bearer
from backoffice.openapi import problem_responses
from backoffice.pagination import page_response
from backoffice.users import service as users

bp = APIBlueprint("auth", __name__, tag="Auth")


@bp.post("/auth/token")
@limit_attempts(PASSWORD_GUESSES)
@bp.input(TokenRequest, location="json_or_form", arg_name="credentials")
@bp.output(TokenOut)
@bp.doc(responses=problem_responses(400, 401, 415, 422, 429))
def issue_token(credentials: TokenRequest) -> Any:
    """Log in: trade an email and password for tokens

    Failed attempts are limited per client IP (`LOGIN_RATE_LIMIT`, 5 per minute by
    default), even when they arrive all at once; past the limit every attempt is 429
    with `Retry-After`.
    """
    return service.issue_tokens(users.authenticate(credentials.email, credentials.password))


@bp.post("/auth/refresh")
@bp.auth_required(refresh_bearer)
@bp.output(TokenOut)
@bp.doc(responses=problem_responses(401))
def refresh_token() -> Any:
    """Trade a refresh token (sent as the bearer token) for new tokens

    The refresh token is spent: of any number of uses at once, one gets new tokens. A
    second use of a spent token revokes every token of its session (401).
    """
    return service.refresh(current_principal())


@bp.post("/auth/logout")
@bp.auth_required(bearer)
@bp.doc(responses={204: "Logged out", **problem_responses(401)})
def logout() -> Response:
    """End this session: its access and refresh tokens, in every worker (no body needed)"""
    service.logout(current_principal().claims)
    return no_content()


@bp.post("/auth/api-keys")
@bp.auth_required(bearer)
@bp.input(ApiKeyIn, arg_name="new_key")
@bp.output(ApiKeyCreated, status_code=201)
@bp.doc(responses=problem_responses(400, 401, 403, 409, 415, 422))
def create_api_key(new_key: ApiKeyIn) -> Any:
    """Create an API key (its secret is in this answer only)

    One person holds at most `API_KEYS_PER_USER` live keys (neither revoked nor expired);
    past it, 409 naming the `limit`: revoke one first.
    """
    api_key, secret = service.create_api_key(
        current_principal(), new_key.name, new_key.scopes, new_key.expires_at
    )
    body = ApiKeyOut.model_validate(api_key).model_dump() | {"key": secret}
    return body, 201, {"Location": url_for(".list_api_keys")}


@bp.get("/auth/api-keys")
@bp.auth_required(bearer)
@bp.input(ApiKeyQuery, location="query", arg_name="query")
@bp.output(ApiKeyList)
@bp.doc(responses=problem_responses(400, 401))
def list_api_keys(query: ApiKeyQuery) -> Any:
    """List your API keys that are not revoked, newest first (never their secrets)"""
    owner = current_principal().user_id
    return page_response(service.list_api_keys(owner, query.limit, query.cursor))


@bp.delete("/auth/api-keys/<uuid:key_id>")
@bp.auth_required(bearer)
@bp.doc(responses={204: "Revoked", **problem_responses(400, 401, 404)})
def revoke_api_key(key_id: uuid.UUID) -> Response:
    """Revoke one of your API keys"""
    service.revoke_api_key(key_id, current_principal().user_id)
    return no_content()
