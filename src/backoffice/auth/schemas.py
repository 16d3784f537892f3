from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AliasChoices, AwareDatetime, Field, StrictStr

from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.principal import Scope
from backoffice.schemas import (
    Email,
    InputModel,
    OutputModel,
    Timestamp,
    example_body,
    single_line,
    trimmed,
)


class TokenRequest(InputModel):
    """JSON `{"email", "password"}`, or the OAuth2 password form (`username`, `password`)
    that the docs page's Authorize button sends. The email is checked as at sign-up: a
    malformed one is 422 (and checks no password, so it is not a failed attempt)."""

    #: The body's example is the whole body: the other fields are the OAuth2 form's.
    model_config = example_body(
        {"email": "ada@lovelace.dev", "password": "correct horse battery staple"}
    )

    email: Email = Field(validation_alias=AliasChoices("email", "username"))
    password: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    grant_type: Literal["password"] | None = None
    scope: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


class TokenOut(OutputModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    refresh_token: str


class ApiKeyIn(InputModel):
    name: Annotated[StrictStr, trimmed(1, 200), single_line] = Field(
        examples=["Nightly stock sync"]
    )
    scopes: Annotated[list[Scope], Field(min_length=1)] | None = Field(
        default=None,
        description="Defaults to every scope of yours except admin.",
        examples=[["items", "orders"]],
    )
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="A moment in the future (422 otherwise); none: never expires.",
        examples=["2030-01-01T00:00:00Z"],
    )


class ApiKeyOut(OutputModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    expires_at: Timestamp | None
    last_used_at: Timestamp | None
    created_at: Timestamp


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown this once: store it now.")


class ApiKeyQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


class ApiKeyList(OutputModel):
    data: list[ApiKeyOut]
    next_cursor: str | None
