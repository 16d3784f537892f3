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
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError

from backoffice.auth.models import RevokedToken
from backoffice.extensions import db
from backoffice.readonly import read_row

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
