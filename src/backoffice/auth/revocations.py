"""Where revoked tokens live: the database's `revoked_tokens` table, and nowhere else.

The database holds the truth: a logout, a family's revocation and a refresh token's
spend are committed with the rest of the service's state, shared by every worker
process, and survive whatever happens to Redis (a restart without persistence, a crash
between snapshots, an eviction: they once lived there, and came back to life with it).
A row is forgotten once its token would have expired anyway (retention deletes it, in
batches, off the request path: `backoffice.housekeeping`). A database that does not
answer fails closed: no token is taken for unrevoked because its revocation could not be
read; the request is 503 (`backoffice.dependencies`).

Every authenticated request reads revocations in the same query as its user's state
(`auth.service.TOKEN_STATE`), and on PostgreSQL the token-state cache spares even that.

`import_from_redis` carries over, once, what a version that kept them in Redis had there,
so the upgrade itself brings no ended session back.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import redis
from sqlalchemy import Table, bindparam, exists, select
from sqlalchemy.exc import IntegrityError

from backoffice.auth.models import RevokedToken
from backoffice.database import upsert_insert, utcnow
from backoffice.dependencies import redis_options
from backoffice.extensions import db
from backoffice.housekeeping import Retention
from backoffice.readonly import read_row

REVOKED_TOKENS: Table = RevokedToken.__table__  # type: ignore[assignment]
#: What retention removes (`backoffice.housekeeping`): a revocation once the token it
#: revokes would have expired anyway.
RETENTION = Retention(REVOKED_TOKENS, REVOKED_TOKENS.c.jti, REVOKED_TOKENS.c.expires_at)

#: Whether the token `:jti` is revoked, as an SQL expression.
REVOKED = exists().where(RevokedToken.jti == bindparam("jti"))


def revoke(jti: str, expires_at: datetime) -> None:
    """Revoke `jti` until `expires_at`; revoking it again changes nothing."""
    spend(jti, expires_at)


def spend(jti: str, expires_at: datetime) -> bool:
    """Revoke `jti` if nobody has yet, atomically: True for the one caller that did.

    The primary key is the compare-and-set: of any number of simultaneous inserts of
    `jti`, in any number of processes, one commits and the others conflict.
    """
    db.session.add(RevokedToken(jti=jti, expires_at=expires_at))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def is_revoked(jti: str) -> bool:
    row = read_row(select(REVOKED), {"jti": jti})
    return bool(row and row[0])


#: How earlier versions named a revocation in Redis (with `REDIS_URL`, no longer read).
REDIS_PREFIX = "backoffice:revoked:"
#: Keys read from Redis, and rows inserted, at a time.
IMPORT_BATCH = 1000


def import_from_redis(url: str, longest: timedelta) -> tuple[int, int]:
    """Copy into the database the revocations an earlier version kept in the Redis at
    `url`, each until the expiry Redis had for it (`longest` from now for one without);
    one the database holds already is left as it is, so running this again is harmless.
    How many Redis held, and how many of them were new to the database."""
    insert = upsert_insert(db.engine.dialect.name, REVOKED_TOKENS)
    held = added = 0
    with redis.Redis.from_url(url, **redis_options()) as client:
        for keys in _batches(client):
            pipeline = client.pipeline(transaction=False)
            for key in keys:
                pipeline.pttl(key)
            now = utcnow()
            rows = [
                {
                    "jti": key.decode()[len(REDIS_PREFIX) :],
                    "expires_at": now + (timedelta(milliseconds=ttl) if ttl >= 0 else longest),
                }
                for key, ttl in zip(keys, pipeline.execute(), strict=True)
                if ttl != -2  # expired since it was listed
            ]
            if rows:
                new = insert.values(rows).on_conflict_do_nothing().returning(REVOKED_TOKENS.c.jti)
                added += len(db.session.execute(new).all())
                db.session.commit()
                held += len(rows)
    return held, added


def _batches(client: redis.Redis) -> Iterator[list[bytes]]:
    keys: list[bytes] = []
    for key in client.scan_iter(match=f"{REDIS_PREFIX}*", count=IMPORT_BATCH):
        keys.append(key)
        if len(keys) == IMPORT_BATCH:
            yield keys
            keys = []
    if keys:
        yield keys
