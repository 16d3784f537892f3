"""Optimistic concurrency for versioned rows (`version_id_col`), below HTTP.

A service that changes a versioned row takes the version its caller expects (None: no
condition), checks it with `require_version`, and commits with `commit_versioned`. Both
raise `StaleVersion`; the HTTP layer decides what status that is (see `errors`).
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm.exc import StaleDataError

from backoffice import transactions
from backoffice.errors import StaleVersion
from backoffice.extensions import db


def require_version(
    resource: str, resource_id: uuid.UUID, current: int, expected: int | None
) -> None:
    """Refuse to change a row that is no longer at the version the caller read."""
    if expected is not None and current != expected:
        raise StaleVersion(resource, resource_id)


def commit_versioned(resource: str, resource_id: uuid.UUID) -> None:
    """Commit a change to a versioned row through `transactions.commit()`.

    A concurrent writer that committed first makes our versioned UPDATE or DELETE match no
    row (SQLAlchemy's StaleDataError, at flush or commit): the change is rolled back and
    the caller learns the row moved under it.
    """
    try:
        transactions.commit()
    except StaleDataError:
        db.session.rollback()
        raise StaleVersion(resource, resource_id, raced=True) from None
