"""People: sign-up, lookup, changes, and the password check behind every login."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from flask import Flask, current_app
from sqlalchemy import Row, Table, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from backoffice import transactions
from backoffice.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
    WrongPassword,
)
from backoffice.extensions import db
from backoffice.ownership import Viewer, sees
from backoffice.pagination import Page, paginate
from backoffice.users.models import Role, User, canonical_email
from backoffice.users.passwords import burn_time, hash_password, needs_rehash, verify_password

USERS: Table = User.__table__  # type: ignore[assignment]
#: Columns a response may show: never the password hash.
PUBLIC_COLUMNS = select(
    USERS.c.id,
    USERS.c.name,
    USERS.c.email,
    USERS.c.role,
    USERS.c.active,
    USERS.c.created_at,
    USERS.c.updated_at,
)
ADMIN_ONLY_FIELDS = frozenset({"role", "active"})
BAD_CREDENTIALS = "The email or password is not correct."
#: Who is asking to create a user: nobody (no credentials), a member, or an admin.
Caller = Literal["anonymous", "member", "admin"]
#: Every role a user may hold, for the forms that offer a choice of them.
ROLES: tuple[str, ...] = tuple(Role)


#: What only the person who knows the password changes of their own account: a stolen
#: access token must not be enough to move the login away from its owner.
NEEDS_CURRENT_PASSWORD = frozenset({"password", "email"})


def _current_password_error(message: str) -> dict[str, Any]:
    return {
        "detail": "To change your own password or email, send your current_password: "
        f"it {message}.",
        "errors": [{"field": "current_password", "message": message}],
    }


def _by_email(email: str) -> User | None:
    return db.session.scalars(
        select(User).where(User.email_canonical == canonical_email(email))
    ).first()


def sign_up(
    name: str, email: str, password: str, caller: Caller, registration: str | None = None
) -> User:
    """A new member, if the registration mode lets this caller create one.

    `registration` (default: the REGISTRATION setting) is "open", anyone signs up, or
    "admin", only an admin creates users: nobody else is 401 (authenticate as an admin),
    a member 403.
    """
    if (registration or current_app.config["REGISTRATION"]) == "admin" and caller != "admin":
        refusal = "Only an admin creates users here (REGISTRATION=admin)."
        if caller == "anonymous":
            raise Unauthorized(refusal)
        raise Forbidden(refusal)
    return create_user(name, email, password)


def create_user(name: str, email: str, password: str, role: Role = Role.MEMBER) -> User:
    user = User(name=name, email=email, password_hash=hash_password(password), role=role)
    db.session.add(user)
    try:
        transactions.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"A user with the email {email} already exists.") from None
    return user


def authenticate(email: str, password: str) -> User:
    """The active user with these credentials; one answer, in one time, for every failure."""
    user = _by_email(email)
    if user is None:
        burn_time(password)
        raise Unauthorized(BAD_CREDENTIALS)
    if not verify_password(user.password_hash, password) or not user.active:
        raise Unauthorized(BAD_CREDENTIALS)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        transactions.commit()
    return user


def get_user(user_id: uuid.UUID) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


def find_by_email(email: str) -> User | None:
    """The user with this email, compared in its canonical form (as at login), if any:
    for a screen that looks someone up by the address a person types."""
    return _by_email(email)


def emails_of(user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each of these users' email, in one query (a page's owners, say); the deleted ones
    are absent."""
    if not user_ids:
        return {}
    rows = db.session.execute(select(USERS.c.id, USERS.c.email).where(USERS.c.id.in_(user_ids)))
    return {row.id: row.email for row in rows}


def visible_user(user_id: uuid.UUID, viewer: Viewer) -> User:
    """A user the viewer may see: themselves, or anyone for an admin (else 404, no leak)."""
    if not sees(viewer, user_id):
        raise NotFound("user", user_id)
    return get_user(user_id)


def list_users(
    limit: int, cursor: str | None, active: bool | None = None, role: Role | None = None
) -> Page[Row[Any]]:
    query = PUBLIC_COLUMNS
    if active is not None:
        query = query.where(USERS.c.active == active)
    if role is not None:
        query = query.where(USERS.c.role == role)
    return paginate("users", query, User.id, limit, cursor)


def update_user(user_id: uuid.UUID, changes: dict[str, Any], viewer: Viewer) -> User:
    """Apply a patch. A new password or email needs `current_password` when it is your
    own (an admin changing someone else's does not); a new password or a deactivation ends
    every token (and a deactivation every API key); no change may leave the service
    without an active admin (409)."""
    user = visible_user(user_id, viewer)
    if ADMIN_ONLY_FIELDS & changes.keys() and not viewer.is_admin:
        raise Forbidden("Only an admin changes a user's role or active flag.")
    _require_current_password(user, changes, changes.pop("current_password", None), viewer)
    password = changes.pop("password", None)
    removes_an_admin = _is_active_admin(user) and (
        changes.get("role", Role.ADMIN) != Role.ADMIN or changes.get("active", True) is False
    )
    if removes_an_admin:
        _lock_active_admins()
    if password is not None:
        user.password_hash = hash_password(password)
    for field, value in changes.items():
        setattr(user, field, value)
    deactivated = changes.get("active") is False
    if password is not None or deactivated:
        user.token_generation += 1  # a new password or a deactivation ends every session
    _announce_after_commit(user_id)
    try:
        db.session.flush()  # the user's row first: a key being created for them waits on it
        if deactivated:
            for listener in _listeners().deactivated:
                listener(user.id)
        if removes_an_admin:
            _keep_an_active_admin()
        transactions.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"A user with the email {changes.get('email')} already exists.") from None
    return user


def delete_user(user_id: uuid.UUID, viewer: Viewer) -> None:
    """Delete the user; their API keys and todos go with them (ON DELETE CASCADE), and
    their tokens with their row. What other capabilities hold for them is settled in the
    same transaction by the deletion listeners (orders: pending ones are cancelled and
    their stock returned). The last active admin is not deleted (409)."""
    user = visible_user(user_id, viewer)
    removes_an_admin = _is_active_admin(user)
    if removes_an_admin:
        _lock_active_admins()
    _lock_for_deletion(user_id)
    try:
        for listener in _listeners().deleted:
            listener(user_id)
        db.session.flush()
        db.session.delete(user)
        db.session.flush()
    except StaleDataError:  # a listener's versioned row changed under it (an order paid)
        db.session.rollback()
        raise Conflict(
            "Something of this user's changed while they were being deleted (an order was "
            "paid or cancelled): nothing was deleted; try again."
        ) from None
    if removes_an_admin:
        _keep_an_active_admin()
    _announce_after_commit(user_id)
    transactions.commit()


#: Told of a change to one user (by id). Users know no other capability: `create_app()`
#: wires who listens.
Listener = Callable[[uuid.UUID], None]


@dataclass(frozen=True)
class UserListeners:
    """Who must hear what of a user."""

    #: In the deletion's transaction, before the user's row goes: settles what another
    #: capability holds for them (orders cancel the pending ones), so it commits, or not,
    #: with the deletion.
    deleted: Sequence[Listener] = ()
    #: In a deactivation's transaction: ends what must not outlive it (auth: the API keys).
    deactivated: Sequence[Listener] = ()
    #: Once any change to the user has committed (a new password, role or email, a
    #: deactivation, a deletion): what was said of their credentials may be stale (auth:
    #: this process's token-state cache forgets them at once; the others hear it from the
    #: database's trigger).
    changed: Sequence[Listener] = ()


def init_listeners(app: Flask, listeners: UserListeners) -> None:
    """Register who must hear of users' changes (from `create_app()`)."""
    app.extensions["user_listeners"] = listeners


def _listeners() -> UserListeners:
    listeners: UserListeners = current_app.extensions.get("user_listeners", UserListeners())
    return listeners


def _announce_after_commit(user_id: uuid.UUID) -> None:
    for listener in _listeners().changed:
        transactions.after_commit(functools.partial(listener, user_id))


def hold_user(user_id: uuid.UUID) -> bool:
    """Keep the user from being deleted until the caller's transaction ends; False if they
    are gone already.

    For a capability about to write rows that reference the user (an order): on
    PostgreSQL it takes FOR KEY SHARE, the lock such a row's foreign key takes anyway, but
    first, so a deletion (which holds the user, then returns stock) and the write (which
    holds the user, then takes stock) lock in the same order and never deadlock. SQLite
    writes one at a time: the foreign key itself refuses a row whose user went meanwhile.
    """
    held = db.session.execute(
        select(USERS.c.id).where(USERS.c.id == user_id).with_for_update(read=True, key_share=True)
    )
    return held.first() is not None


def _lock_for_deletion(user_id: uuid.UUID) -> None:
    """Hold the user's row until the deletion commits, before anything is read about them.

    The no-op UPDATE takes SQLite's write lock (nothing commits beside it from now on);
    on PostgreSQL the SELECT ... FOR UPDATE conflicts with the key-share lock that a row
    referencing the user takes (an order being placed): one committed already is seen by
    the listeners, one not yet committed waits and then finds the user gone.
    """
    db.session.execute(
        update(USERS).where(USERS.c.id == user_id).values(updated_at=USERS.c.updated_at)
    )
    db.session.execute(select(USERS.c.id).where(USERS.c.id == user_id).with_for_update())


def _require_current_password(
    user: User, changes: dict[str, Any], current_password: str | None, viewer: Viewer
) -> None:
    """`current_password` comes only with a new password or email (422 alone), and is
    needed, and checked, when the password or email is the viewer's own."""
    guarded = NEEDS_CURRENT_PASSWORD & changes.keys()
    if current_password is not None and not guarded:
        message = "is sent only with a new password or email"
        raise ValidationFailed(
            f"current_password {message}.",
            errors=[{"field": "current_password", "message": message}],
        )
    if guarded and user.id == viewer.user_id:
        _check_current_password(user, current_password)


def _check_current_password(user: User, current_password: str | None) -> None:
    if current_password is None:
        raise ValidationFailed(**_current_password_error("is required"))
    if not verify_password(user.password_hash, current_password):
        raise WrongPassword(**_current_password_error("is not your current password"))


def _is_active_admin(user: User) -> bool:
    return user.role == Role.ADMIN and user.active


def _lock_active_admins() -> None:
    """Lock every active admin's row, in id order, before a change that removes one.

    On PostgreSQL, two such changes then run one after the other (the second re-reads
    the rows the first changed), so two admins demoting themselves at once cannot both
    succeed; on SQLite the write lock orders them already.
    """
    db.session.execute(
        select(User.id)
        .where(User.role == Role.ADMIN, User.active.is_(True))
        .order_by(User.id)
        .with_for_update()
    )


def _keep_an_active_admin() -> None:
    """After the change is flushed: if no active admin is left, undo it (409)."""
    left = db.session.scalar(
        select(func.count()).where(User.role == Role.ADMIN, User.active.is_(True))
    )
    if not left:
        db.session.rollback()
        raise Conflict("This would leave no active admin: make someone else an admin first.")


def ensure_admin(email: str, password: str, name: str = "Administrator") -> User | None:
    """Create the first admin unless an admin exists already; None when nothing was done."""
    if db.session.scalars(select(User.id).where(User.role == Role.ADMIN)).first() is not None:
        return None
    try:
        return create_user(name, email, password, Role.ADMIN)
    except Conflict:
        return None  # another process made it first
