"""Tokens and API keys: issuing them, ending them, and turning them into a Principal."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from jwt import PyJWTError
from sqlalchemy import Row, Table, bindparam, select, update

from backoffice.auth.models import ApiKey
from backoffice.auth.principal import Principal, scopes_for
from backoffice.auth.revocations import REVOKED, revocations
from backoffice.database import utcnow
from backoffice.errors import Forbidden, NotFound, ValidationFailed
from backoffice.extensions import db
from backoffice.readonly import read_row
from backoffice.users import service as users
from backoffice.users.models import User

USERS: Table = User.__table__  # type: ignore[assignment]
API_KEYS: Table = ApiKey.__table__  # type: ignore[assignment]
#: What every authenticated request asks about its token's user, built once.
TOKEN_STATE = select(USERS.c.role, USERS.c.active, USERS.c.token_generation).where(
    USERS.c.id == bindparam("user_id")
)
TOKEN_STATE_AND_REVOCATION = TOKEN_STATE.add_columns(REVOKED.label("revoked"))
#: What every API-key request asks about its key and owner, built once.
KEY_BY_PREFIX = (
    select(
        API_KEYS.c.id,
        API_KEYS.c.user_id,
        API_KEYS.c.key_hash,
        API_KEYS.c.scopes,
        API_KEYS.c.expires_at,
        API_KEYS.c.last_used_at,
        API_KEYS.c.revoked_at,
        USERS.c.role,
        USERS.c.active,
    )
    .join(USERS, USERS.c.id == API_KEYS.c.user_id)
    .where(API_KEYS.c.prefix == bindparam("prefix"))
)
KEY_PREFIX = "bo_"
#: last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


# --- tokens ---------------------------------------------------------------------


def issue_tokens(user: User) -> dict[str, Any]:
    claims = {"role": user.role, "gen": user.token_generation}
    identity = str(user.id)
    expires: timedelta = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return {
        "access_token": create_access_token(identity, additional_claims=claims),
        "token_type": "bearer",
        "expires_in": int(expires.total_seconds()),
        "refresh_token": create_refresh_token(identity, additional_claims=claims),
    }


def login(email: str, password: str) -> dict[str, Any]:
    return issue_tokens(users.authenticate(email, password))


def _decode(token: str, kind: str) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = decode_token(token)
    except (PyJWTError, ValueError, KeyError):
        return None
    return claims if claims.get("type") == kind else None


def principal_from_token(token: str, kind: str = "access") -> Principal | None:
    """The caller behind a JWT that is valid now: signed by us, unexpired, not revoked,
    and issued to a user who is still active and has not ended their sessions since."""
    claims = _decode(token, kind)
    if claims is None:
        return None
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        return None
    store, jti = revocations(), str(claims["jti"])
    query = TOKEN_STATE_AND_REVOCATION if store.in_database else TOKEN_STATE
    user = read_row(query, {"user_id": user_id, "jti": jti})
    if user is None or not user.active or user.token_generation != claims.get("gen"):
        return None
    revoked = user.revoked if store.in_database else store.is_revoked(jti)
    if revoked:
        return None
    return Principal(user_id, user.role, scopes_for(user.role), "jwt", claims)


def refresh(refresh_principal: Principal) -> dict[str, Any]:
    """New tokens for a refresh token, which is spent: refresh tokens are single-use."""
    revoke(refresh_principal.claims)
    return issue_tokens(users.get_user(refresh_principal.user_id))


def revoke(claims: dict[str, Any]) -> None:
    revocations().revoke(str(claims["jti"]), datetime.fromtimestamp(int(claims["exp"]), UTC))


def revoke_refresh_token(token: str, user_id: uuid.UUID) -> None:
    """Logout may hand in its refresh token too; only the caller's own is revoked."""
    claims = _decode(token, "refresh")
    if claims is None or claims.get("sub") != str(user_id):
        raise ValidationFailed(
            "refresh_token is not a valid refresh token of yours.",
            errors=[{"field": "refresh_token", "message": "invalid refresh token"}],
        )
    revoke(claims)


# --- API keys -------------------------------------------------------------------


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    owner: Principal, name: str, scopes: Sequence[str] | None, expires_at: datetime | None
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is shown this once and never stored."""
    allowed = scopes_for(owner.role)
    wanted = set(scopes) if scopes is not None else allowed - {"admin"}
    if not wanted <= allowed:
        raise Forbidden(f"You may grant only these scopes: {', '.join(sorted(allowed))}.")
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed(
            "expires_at must be in the future.",
            errors=[{"field": "expires_at", "message": "must be in the future"}],
        )
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey(
        user_id=owner.user_id,
        name=name,
        prefix=prefix,
        key_hash=_digest(key),
        scopes=sorted(wanted),
        expires_at=expires_at,
    )
    db.session.add(api_key)
    db.session.commit()
    return api_key, key


def list_api_keys(user_id: uuid.UUID) -> list[ApiKey]:
    return list(
        db.session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.id.desc())
        )
    )


def revoke_api_key(key_id: uuid.UUID, user_id: uuid.UUID) -> None:
    api_key = db.session.get(ApiKey, key_id)
    if api_key is None or api_key.user_id != user_id or api_key.revoked_at is not None:
        raise NotFound("API key", key_id)
    api_key.revoked_at = utcnow()
    db.session.commit()


def _key_row(key: str) -> Row[Any] | None:
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + 10:
        return None
    prefix = key[len(KEY_PREFIX) : len(KEY_PREFIX) + 8]
    return read_row(KEY_BY_PREFIX, {"prefix": prefix})


def principal_from_api_key(key: str) -> Principal | None:
    """The caller behind a live key of an active user; the hash compared in constant time."""
    row = _key_row(key)
    # Compare even when nothing was found, so a miss costs what a wrong key costs.
    expected = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(expected, _digest(key)) or row is None:
        return None
    now = utcnow()
    expired = row.expires_at is not None and row.expires_at <= now
    if row.revoked_at is not None or expired or not row.active:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        db.session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        db.session.commit()
    scopes = frozenset(row.scopes) & scopes_for(row.role)
    return Principal(row.user_id, row.role, scopes, "api_key")
