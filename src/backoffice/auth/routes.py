from __future__ import annotations

import uuid
from typing import Any

from apiflask.views import MethodView
from flask import Response, url_for

from backoffice.attempts import PASSWORD_GUESSES, limit_attempts
from backoffice.auth import service
from backoffice.auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyList,
    ApiKeyQuery,
    TokenOut,
    TokenRequest,
)
from backoffice.conventions import no_content
from backoffice.guards import bearer, current_principal, refresh_bearer
from backoffice.openapi import problem_responses
from backoffice.output import Blueprint
from backoffice.users import service as users

bp = Blueprint("auth", __name__, tag="Auth")


class Token(MethodView):
    """`{prefix}/auth/token`: log in."""

    @limit_attempts(PASSWORD_GUESSES)
    @bp.input(TokenRequest, location="json_or_form", arg_name="credentials")
    @bp.output(TokenOut)
    @bp.doc(operation_id="issue_token", responses=problem_responses(400, 401, 415, 422, 429))
    def post(self, credentials: TokenRequest) -> Any:
        """Log in: trade an email and password for tokens

        Failed attempts are limited per client IP (`LOGIN_RATE_LIMIT`, 5 per minute by
        default), even when they arrive all at once; past the limit every attempt is 429
        with `Retry-After`.
        """
        return service.issue_tokens(users.authenticate(credentials.email, credentials.password))


class Refresh(MethodView):
    """`{prefix}/auth/refresh`."""

    decorators = [bp.auth_required(refresh_bearer)]

    @bp.output(TokenOut)
    @bp.doc(operation_id="refresh_token", responses=problem_responses(401))
    def post(self) -> Any:
        """Trade a refresh token (sent as the bearer token) for new tokens

        The refresh token is spent: of any number of uses at once, one gets new tokens. A
        second use of a spent token revokes every token of its session (401).
        """
        return service.refresh(current_principal())


class Logout(MethodView):
    """`{prefix}/auth/logout`."""

    decorators = [bp.auth_required(bearer)]

    @bp.doc(operation_id="logout", responses={204: "Logged out", **problem_responses(401)})
    def post(self) -> Response:
        """End this session: its access and refresh tokens, in every worker (no body needed)"""
        service.logout(current_principal().claims)
        return no_content()


class ApiKeyCollection(MethodView):
    """`{prefix}/auth/api-keys`: your keys (a person's token only, never a key)."""

    decorators = [bp.auth_required(bearer)]

    @bp.input(ApiKeyQuery, location="query", arg_name="query")
    @bp.output(ApiKeyList)
    @bp.doc(operation_id="list_api_keys", responses=problem_responses(400, 401))
    def get(self, query: ApiKeyQuery) -> Any:
        """List your API keys that are not revoked, newest first (never their secrets)"""
        owner = current_principal().user_id
        return service.list_api_keys(owner, query.limit, query.cursor)

    @bp.input(ApiKeyIn, arg_name="new_key")
    @bp.output(ApiKeyCreated, status_code=201)
    @bp.doc(
        operation_id="create_api_key", responses=problem_responses(400, 401, 403, 409, 415, 422)
    )
    def post(self, new_key: ApiKeyIn) -> Any:
        """Create an API key (its secret is in this answer only)

        One person holds at most `API_KEYS_PER_USER` live keys (neither revoked nor
        expired); past it, 409 naming the `limit`: revoke one first.
        """
        created = service.create_api_key(
            current_principal(), new_key.name, new_key.scopes, new_key.expires_at
        )
        return created, 201, {"Location": url_for(".api_keys")}


class ApiKeyResource(MethodView):
    """`{prefix}/auth/api-keys/<id>`: one of your keys."""

    decorators = [bp.auth_required(bearer)]

    @bp.doc(
        operation_id="revoke_api_key",
        responses={204: "Revoked", **problem_responses(400, 401, 404)},
    )
    def delete(self, key_id: uuid.UUID) -> Response:
        """Revoke one of your API keys"""
        service.revoke_api_key(key_id, current_principal().user_id)
        return no_content()


bp.add_url_rule("/auth/token", view_func=Token.as_view("token"))
bp.add_url_rule("/auth/refresh", view_func=Refresh.as_view("refresh"))
bp.add_url_rule("/auth/logout", view_func=Logout.as_view("logout"))
bp.add_url_rule("/auth/api-keys", view_func=ApiKeyCollection.as_view("api_keys"))
bp.add_url_rule("/auth/api-keys/<uuid:key_id>", view_func=ApiKeyResource.as_view("api_key"))
