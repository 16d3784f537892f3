"""Tokens and API keys: issuing them, ending them, and turning them into a Principal."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

from flask import Flask, current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from jwt import PyJWTError
from sqlalchemy import Row, Table, bindparam, exists, func, or_, select, update
from sqlalchemy.engine import make_url

from backoffice.auth import revocations
from backoffice.auth.models import ApiKey, RevokedToken
from backoffice.auth.token_states import TokenStates, token_states_for
from backoffice.database import utcnow
from backoffice.errors import Conflict, Forbidden, InvalidToken, NotFound, ValidationFailed
from backoffice.extensions import db
from backoffice.pagination import Page, paginate
from backoffice.prepared import prepared
from backoffice.principal import Principal, scopes_for
from backoffice.readonly import read_row
from backoffice.users import service as users

#: Read in the same query as a credential's own row (one round trip per request).
USERS: Table = users.USERS
API_KEYS: Table = ApiKey.__table__  # type: ignore[assignment]
#: What every authenticated request asks about its token, built once: its user's state,
#: and whether the token `:jti` or its `:family` is revoked, in one query.
TOKEN_STATE = prepared(
    select(
        USERS.c.role,
        USERS.c.active,
        USERS.c.token_generation,
        exists()
        .where(RevokedToken.jti.in_([bindparam("jti"), bindparam("family")]))
        .label("revoked"),
    ).where(USERS.c.id == bindparam("user_id"))
)
#: What every API-key request asks about its key and owner, built once.
KEY_BY_PREFIX = prepared(
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
#: What a list shows of a key: never its hash.
API_KEY_COLUMNS = select(
    API_KEYS.c.id,
    API_KEYS.c.name,
    API_KEYS.c.prefix,
    API_KEYS.c.scopes,
    API_KEYS.c.expires_at,
    API_KEYS.c.last_used_at,
    API_KEYS.c.created_at,
)
KEY_PREFIX = "bo_"
#: last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: A revoked family outlives its last possible token by this much (clock skew, requests
#: in flight).
FAMILY_MARGIN = timedelta(minutes=1)


# --- tokens ---------------------------------------------------------------------
#
# Every token of one login shares a family (`fam`): the login's access and refresh tokens,
# and all the pairs its refreshes hand out. Logout, or a second use of a spent refresh
# token (theft), revokes the family, so every token of that session dies at once. A
# revoked family is stored like a revoked token, under `family:<id>`.


class Person(Protocol):
    """Whom a session is for (a user, as `users` gives them)."""

    id: uuid.UUID
    role: str
    token_generation: int


def issue_tokens(user: Person) -> dict[str, Any]:
    """A new session for `user`: a fresh family."""
    return _token_pair(user.id, user.role, user.token_generation, str(uuid.uuid4()))


def _token_pair(user_id: uuid.UUID, role: str, generation: int, family: str) -> dict[str, Any]:
    claims = {"role": role, "gen": generation, "fam": family}
    identity = str(user_id)
    expires: timedelta = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    return {
        "access_token": create_access_token(identity, additional_claims=claims),
        "token_type": "bearer",
        "expires_in": int(expires.total_seconds()),
        "refresh_token": create_refresh_token(identity, additional_claims=claims),
    }


class VerifiedTokens:
    """Tokens whose signature and claims were verified, each kept until it expires.

    A JWT's signature and claims do not change: once `decode_token` has accepted a token,
    it would accept it again until `exp`. Keeping the result (a bounded LRU keyed by the
    raw token) spares every later request of the same token the base64 and HMAC work.
    It keeps only what the token says, never its state: revocation, the user's activity
    and token generation are still read on every request, so ending a token ends it at
    once. A forged token is never kept, so it costs a full check every time.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._claims: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, now: float) -> dict[str, Any] | None:
        with self._lock:
            claims = self._claims.get(token)
            if claims is None:
                return None
            if claims["exp"] <= now:
                del self._claims[token]
                return None
            self._claims.move_to_end(token)
        return dict(claims)  # a copy: callers may not change what the next request reads

    def put(self, token: str, claims: dict[str, Any]) -> None:
        with self._lock:
            self._claims[token] = dict(claims)
            if len(self._claims) > self._size:
                self._claims.popitem(last=False)


#: How many verified tokens a process keeps (a few hundred bytes each).
VERIFIED_TOKENS = 4096


def init_tokens(app: Flask) -> None:
    app.extensions["verified_tokens"] = VerifiedTokens(VERIFIED_TOKENS)
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    app.extensions["token_states"] = token_states_for(
        url, app.config["AUTH_CACHE"], app.config["AUTH_CACHE_MAX_AGE"]
    )


def token_states() -> TokenStates | None:
    """This app's view of token and key states (`auth.token_states`), None when off."""
    states: TokenStates | None = current_app.extensions["token_states"]
    return states


def forget_user(user_id: uuid.UUID) -> None:
    """After a committed change to the user (role, activity, generation, deletion): this
    process answers from the database from now on (the others when notified)."""
    if (states := token_states()) is not None:
        states.forget_user(user_id)


def _forget_api_key(prefix: str) -> None:
    if (states := token_states()) is not None:
        states.forget_api_key(prefix)


def _forget_revoked(jti: str) -> None:
    if (states := token_states()) is not None:
        states.forget_revoked(jti)


def _decode(token: str, kind: str) -> dict[str, Any] | None:
    verified: VerifiedTokens = current_app.extensions["verified_tokens"]
    claims = verified.get(token, time.time())
    if claims is None:
        try:
            claims = decode_token(token)
        except (PyJWTError, ValueError, KeyError):
            return None
        verified.put(token, claims)
    return claims if claims.get("type") == kind else None


def _family(claims: dict[str, Any]) -> str:
    """The token's family; a token issued before families is a family of its own."""
    return str(claims.get("fam") or claims["jti"])


def _family_key(claims: dict[str, Any]) -> str:
    """Where `revocations` keeps the family's revocation."""
    return f"family:{_family(claims)}"


def check_revocations() -> None:
    """Raise unless revoked tokens can be read now (readiness)."""
    revocations.is_revoked("readiness")


def principal_from_token(token: str, kind: str = "access") -> Principal | None:
    """The caller behind a JWT that is valid now: signed by us, unexpired, not revoked (nor
    its family), and issued to a user who is still active and has not ended their sessions
    since. A refresh token's own revocation (it was spent) is left to `refresh`, which
    must see a reuse to revoke the family. A console session is never an API token."""
    claims = _decode(token, kind)
    if claims is None or claims.get(CONSOLE_CLAIM):
        return None
    return _principal(claims, kind)


def _principal(claims: dict[str, Any], kind: str) -> Principal | None:
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        return None
    family = _family_key(claims)
    jti = str(claims["jti"]) if kind == "access" else family
    role = _token_state(user_id, jti, family, claims.get("gen"))
    if role is None:
        return None
    return Principal(user_id, role, scopes_for(role), "jwt", claims)


def _token_state(user_id: uuid.UUID, jti: str, family: str, generation: Any) -> str | None:
    """The role of a user who is active at `generation`, and whose token `jti` and
    `family` are not revoked; None otherwise. From the token-state cache when it holds
    the answer, else one query (cached if nothing changed meanwhile)."""
    states = token_states()
    epoch = states.epoch() if states is not None else None
    key = (user_id, jti, family, generation)
    if states is not None and epoch is not None and (cached := states.token(key)) is not None:
        return str(cached)
    user = read_row(TOKEN_STATE, {"user_id": user_id, "jti": jti, "family": family})
    if user is None or not user.active or user.token_generation != generation or user.revoked:
        return None
    if states is not None and epoch is not None:
        states.store_token(epoch, key, user.role)
    return str(user.role)


def refresh(refresh_principal: Principal) -> dict[str, Any]:
    """New tokens for a refresh token, which is spent: one use, even under concurrency.

    Spending is a compare-and-set in the database (an insert of its jti, whose primary
    key refuses a second), so of any number of simultaneous uses exactly one wins. Any
    other use of a spent token means two parties hold it: the family is revoked, ending
    the session for both (the legitimate client logs in again; the thief's tokens are
    dead).
    """
    claims: dict[str, Any] = refresh_principal.claims
    if not revocations.spend(str(claims["jti"]), _expiry(claims)):
        _revoke_family(claims)
        raise InvalidToken(
            "This refresh token was already used: every token of its session is now revoked. "
            "Log in again."
        )
    user_id, role = refresh_principal.user_id, refresh_principal.role
    return _token_pair(user_id, role, int(claims["gen"]), _family(claims))


def logout(claims: dict[str, Any]) -> None:
    """End the session these claims belong to: every token of their family."""
    _revoke_family(claims)


def _expiry(claims: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(claims["exp"]), UTC)


def _revoke_family(claims: dict[str, Any]) -> None:
    """Revoke the family until every token it can still hold has expired: a refresh in
    flight may issue one more pair, lasting at most the longest token lifetime."""
    config = current_app.config
    lifetime = max(config["JWT_ACCESS_TOKEN_EXPIRES"], config["JWT_REFRESH_TOKEN_EXPIRES"])
    revocations.revoke(_family_key(claims), utcnow() + lifetime + FAMILY_MARGIN)
    _forget_revoked(_family_key(claims))


# --- console sessions -------------------------------------------------------------
#
# A person signed in to the console holds an access token of a family of its own, marked
# as a console session and kept in an HttpOnly cookie. It is checked exactly as an API
# token is (signature, expiry, family revocation, the user active and at the token's
# generation, through the same token-state cache), so every way a credential ends ends a
# console session within the same bound; and a change of role ends it too, since the
# pages a person sees depend on it. The API refuses it as a bearer token, and the
# console refuses API tokens.

#: The claim that marks a console session.
CONSOLE_CLAIM = "con"


def issue_console_session(user: Person, lifetime: timedelta) -> str:
    """A new console session for `user` (a fresh family: a fresh id at every sign-in)."""
    claims = {"role": user.role, "gen": user.token_generation, "fam": str(uuid.uuid4())}
    claims[CONSOLE_CLAIM] = 1
    token: str = create_access_token(str(user.id), additional_claims=claims, expires_delta=lifetime)
    return token


def principal_from_console_session(token: str) -> Principal | None:
    """The person behind a console session that is valid now, at the role it began with."""
    claims = _decode(token, "access")
    if claims is None or not claims.get(CONSOLE_CLAIM):
        return None
    principal = _principal(claims, "access")
    if principal is None or principal.role != claims.get("role"):
        return None
    return principal


# --- API keys -------------------------------------------------------------------


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    """A key just created, as it is shown this once: with its secret, never stored."""

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    key: str


def create_api_key(
    owner: Principal, name: str, scopes: Sequence[str] | None, expires_at: datetime | None
) -> NewApiKey:
    """A new key and its secret, which is shown this once and never stored.

    The owner's row is locked while the key is added, so a deactivation running at the
    same time either waits and then ends this key too, or comes first and this is 401;
    and the owner's creations run one at a time, so none sees a count another is about
    to change: at most API_KEYS_PER_USER live keys, however many arrive at once (409).
    """
    allowed = scopes_for(owner.role)
    wanted = set(scopes) if scopes is not None else allowed - {"admin"}
    if not wanted <= allowed:
        raise Forbidden(f"You may grant only these scopes: {', '.join(sorted(allowed))}.")
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed(
            "expires_at must be in the future.",
            errors=[{"field": "expires_at", "message": "must be in the future"}],
        )
    _lock_live_owner(owner)
    _check_room_for_a_key(owner.user_id)
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
    return NewApiKey(
        api_key.id,
        api_key.name,
        api_key.prefix,
        api_key.scopes,
        api_key.expires_at,
        api_key.last_used_at,
        api_key.created_at,
        key,
    )


def _lock_live_owner(owner: Principal) -> None:
    """Lock the owner's row if they are still active (and, for a token, still at its
    generation), else 401. An UPDATE that changes nothing: it takes the row lock on
    PostgreSQL, the write lock on SQLite, and checks the row in the same statement."""
    live = [USERS.c.id == owner.user_id, USERS.c.active.is_(True)]
    if "gen" in owner.claims:
        live.append(USERS.c.token_generation == owner.claims["gen"])
    locked = db.session.execute(update(USERS).where(*live).values(updated_at=USERS.c.updated_at))
    if locked.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise InvalidToken("Your session has ended: log in again.")


def _check_room_for_a_key(user_id: uuid.UUID) -> None:
    """409 if the user already holds API_KEYS_PER_USER live keys (neither revoked nor
    expired). Called with the owner's row locked (`_lock_live_owner`), so the count is
    that of every creation committed before this one, and none runs beside it."""
    limit: int = current_app.config["API_KEYS_PER_USER"]
    now = utcnow()
    live = db.session.scalar(
        select(func.count())
        .select_from(API_KEYS)
        .where(
            API_KEYS.c.user_id == user_id,
            API_KEYS.c.revoked_at.is_(None),
            or_(API_KEYS.c.expires_at.is_(None), API_KEYS.c.expires_at > now),
        )
    )
    if (live or 0) >= limit:
        db.session.rollback()
        raise Conflict(
            f"You hold {live} live API keys, the most one person may (API_KEYS_PER_USER="
            f"{limit}): revoke one before creating another.",
            limit=limit,
        )


def end_api_keys(user_id: uuid.UUID) -> None:
    """Revoke every live key of the user, in the caller's transaction (a deactivation):
    reactivating the user later does not bring them back."""
    db.session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def list_api_keys(user_id: uuid.UUID, limit: int, cursor: str | None) -> Page[Row[Any]]:
    """A page of the user's keys that are not revoked (expired ones included), newest first."""
    query = API_KEY_COLUMNS.where(API_KEYS.c.user_id == user_id, API_KEYS.c.revoked_at.is_(None))
    return paginate("api-keys", query, ApiKey.id, limit, cursor)


def revoke_api_key(key_id: uuid.UUID, user_id: uuid.UUID) -> None:
    api_key = db.session.get(ApiKey, key_id)
    if api_key is None or api_key.user_id != user_id or api_key.revoked_at is not None:
        raise NotFound("API key", key_id)
    api_key.revoked_at = utcnow()
    db.session.commit()
    _forget_api_key(api_key.prefix)


class KeyRow(NamedTuple):
    """What `KEY_BY_PREFIX` answers about a key and its owner."""

    id: uuid.UUID
    user_id: uuid.UUID
    key_hash: str
    scopes: list[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    role: str
    active: bool
    prefix: str


def _key_row(key: str) -> KeyRow | None:
    """The key's row: from the token-state cache when it holds it, else one query (a
    live key's row is cached if nothing changed meanwhile)."""
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + 10:
        return None
    prefix = key[len(KEY_PREFIX) : len(KEY_PREFIX) + 8]
    states = token_states()
    epoch = states.epoch() if states is not None else None
    cached = states.api_key(prefix) if states is not None and epoch is not None else None
    if cached is not None:
        return cast(KeyRow, cached)  # the cache holds what `_key_row` stored
    row = read_row(KEY_BY_PREFIX, {"prefix": prefix})
    if row is None:
        return None
    found = KeyRow(**row._asdict(), prefix=prefix)
    if states is not None and epoch is not None and found.revoked_at is None and found.active:
        states.store_api_key(epoch, prefix, found.user_id, found)
    return found


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
        _touch(row, now)
    scopes = frozenset(row.scopes) & scopes_for(row.role)
    return Principal(row.user_id, row.role, scopes, "api_key")


def _touch(row: KeyRow, now: datetime) -> None:
    """Record the key's use, at most once a minute however many processes serve it (each
    may hold an older `last_used_at` in its cache; the row's own decides)."""
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == row.id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
    )
    db.session.commit()
    if (states := token_states()) is not None:
        states.replace_api_key(row.prefix, row._replace(last_used_at=now))
