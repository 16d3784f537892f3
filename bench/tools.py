"""The tools in the benchmark: `POST /api/process` as a machine client calls it (an API key).

Its target: at least 0.8x the authenticated item read. Both authenticate with one query
(the key's row and owner; the token's user and revocation); the process then does no I/O
at all, where the read makes a second round trip for the item.
"""

from __future__ import annotations

from backoffice.auth import service as auth
from backoffice.principal import Principal, scopes_for
from backoffice.users.models import User
from bench.load import Endpoint


def process_key(member: User) -> str:
    """A key of `member`'s with only the `tools` scope (call inside an app context)."""
    owner = Principal(member.id, member.role, scopes_for(member.role), "jwt")
    return auth.create_api_key(owner, "bench /process", ["tools"], None).key


def process_endpoint(api_key: str) -> Endpoint:
    """bench/post_process.lua sends a sentence of nine words."""
    return Endpoint(
        "process",
        "POST /api/process (API key)",
        "/api/process",
        "post_process.lua",
        (f"X-API-Key: {api_key}",),
    )
