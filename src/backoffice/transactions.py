"""Units of work: services commit through here, so several writes can share one commit.

`commit()` is what a service calls at the end of a write. `one_transaction()` lets a
caller (the `Idempotency-Key` layer) make a service's writes and its own one atomic
commit. `after_commit()` defers side effects, such as a queue message, until the rows
they announce are committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session
from sqlalchemy.sql.base import Executable

from backoffice.extensions import db
from backoffice.prepared import run_alone

#: `session.info` keys: set while an outer unit of work owns the commit; callbacks to run
#: once the work is committed.
_DEFERRED = "backoffice.commit_deferred"
_AFTER_COMMIT = "backoffice.after_commit"


def _session() -> Session:
    session: Session = db.session()
    return session


def commit() -> None:
    """Commit the session's work, or, inside `one_transaction()`, only flush it.

    Services end their writes with this instead of `db.session.commit()`: on its own a
    create is its own transaction, and under `Idempotency-Key` the stored answer joins the
    same transaction (see `backoffice.idempotency`). Flushing raises the same
    IntegrityError or StaleDataError a commit would, so services map them the same way.
    """
    session = _session()
    if session.info.get(_DEFERRED):
        session.flush()
        return
    session.commit()
    _run_after_commit(session)


def write_one(statement: Executable, parameters: dict[str, Any]) -> Row[Any]:
    """Run a write that is a unit of work on its own and return its one `RETURNING` row.

    Alone, it runs in autocommit on a connection of its own: committed when it returns,
    with no BEGIN or COMMIT round trip and none of the session's bookkeeping (a third of
    an item create's CPU); a `prepared()` statement on the driver itself. Inside
    `one_transaction()` it joins the shared transaction.
    """
    session = _session()
    if session.info.get(_DEFERRED):
        return session.execute(statement, parameters).one()
    (row,) = write_alone(statement, parameters)
    return row


def write_alone(statement: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]:
    """Run one write committed on its own, now, whatever unit of work is open, and return
    its `RETURNING` rows (none for an `ON CONFLICT DO NOTHING` that found its row)."""
    return run_alone(statement, parameters)


def after_commit(callback: Callable[[], object]) -> None:
    """Run `callback` once the work in progress is committed by `commit()` (a message to
    the queue must never announce a row that may still be rolled back)."""
    _session().info.setdefault(_AFTER_COMMIT, []).append(callback)


def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


@contextmanager
def one_transaction() -> Iterator[None]:
    """Everything in the block commits together, once, at `commit()` after the block.

    Inside, `commit()` only flushes; the caller commits (or rolls back) when the block
    ends. On an exception the work is rolled back and its after-commit callbacks dropped.
    """
    session = _session()
    session.info[_DEFERRED] = True
    try:
        yield
    except BaseException:
        session.info.pop(_DEFERRED, None)
        session.info.pop(_AFTER_COMMIT, None)
        session.rollback()
        raise
    session.info.pop(_DEFERRED, None)
