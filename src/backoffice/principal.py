"""Who is calling: the same shape whether they came with a JWT or an API key, and what
they may touch (scopes). Shared by every capability's views; knows none of them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal, get_args

#: What a caller may be allowed to touch. A JWT carries every scope its role allows; an
#: API key carries the scopes it was created with, never more than its owner's role.
Scope = Literal["admin", "items", "orders", "jobs", "todos", "tools", "users"]
ALL_SCOPES: frozenset[str] = frozenset(get_args(Scope))
SCOPE_DESCRIPTIONS: dict[str, str] = {
    "items": "Read and write inventory items",
    "jobs": "Start and follow your background jobs",
    "orders": "Place, read and cancel your orders",
    "todos": "Your own todos",
    "tools": "Text processing, division and the chat gateway (and your chat usage)",
    "users": "Your own user",
    "admin": "Every user and every admin view (admins only)",
}
MEMBER_SCOPES = ALL_SCOPES - {"admin"}


#: The role that holds every scope (`users.models.Role.ADMIN`, a string enum).
ADMIN_ROLE = "admin"


def scopes_for(role: str) -> frozenset[str]:
    return ALL_SCOPES if role == ADMIN_ROLE else MEMBER_SCOPES


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    role: str
    scopes: frozenset[str]
    via: Literal["jwt", "api_key"]
    #: The JWT's claims (jti, exp, ...) when `via == "jwt"`.
    claims: dict[str, object] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def roles(self) -> list[str]:
        """What `@bp.auth_required(..., roles=[...])` checks: the scopes held."""
        return sorted(self.scopes)
