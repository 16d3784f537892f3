"""People: sign-up, lookup, changes, and the password check behind every login."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app
from sqlalchemy import Row, Table, func, select
from sqlalchemy.exc import IntegrityError

from backoffice import transactions
from backoffice.errors import Conflict, Forbidden, NotFound, Unauthorized
from backoffice.extensions import db
from backoffice.pagination import Page, paginate
from backoffice.users.models import Role, User
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


def _by_email(email: str) -> User | None:
    return db.session.scalars(select(User).where(func.lower(User.email) == email.lower())).first()


def sign_up(
    name: str, email: str, password: str, caller_is_admin: bool, registration: str | None = None
) -> User:
    """A new member, if the registration mode lets this caller create one.

    `registration` (default: the REGISTRATION setting) is "open", anyone signs up, or
    "admin", only an admin creates users.
    """
    if (registration or current_app.config["REGISTRATION"]) == "admin" and not caller_is_admin:
        raise Forbidden("Only an admin creates users here (REGISTRATION=admin).")
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


def visible_user(user_id: uuid.UUID, viewer_id: uuid.UUID, viewer_is_admin: bool) -> User:
    """A user the viewer may see: themselves, or anyone for an admin (else 404, no leak)."""
    if user_id != viewer_id and not viewer_is_admin:
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


def update_user(
    user_id: uuid.UUID, changes: dict[str, Any], viewer_id: uuid.UUID, viewer_is_admin: bool
) -> User:
    user = visible_user(user_id, viewer_id, viewer_is_admin)
    if ADMIN_ONLY_FIELDS & changes.keys() and not viewer_is_admin:
        raise Forbidden("Only an admin changes a user's role or active flag.")
    password = changes.pop("password", None)
    if password is not None:
        user.password_hash = hash_password(password)
    for field, value in changes.items():
        setattr(user, field, value)
    if password is not None or changes.get("active") is False:
        user.token_generation += 1  # a new password or a deactivation ends every session
    try:
        transactions.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(f"A user with the email {changes.get('email')} already exists.") from None
    return user


def delete_user(user_id: uuid.UUID, viewer_id: uuid.UUID, viewer_is_admin: bool) -> None:
    """Delete the user; their API keys and todos go with them (ON DELETE CASCADE)."""
    db.session.delete(visible_user(user_id, viewer_id, viewer_is_admin))
    transactions.commit()


def ensure_admin(email: str, password: str, name: str = "Administrator") -> User | None:
    """Create the first admin unless an admin exists already; None when nothing was done."""
    if db.session.scalars(select(User.id).where(User.role == Role.ADMIN)).first() is not None:
        return None
    try:
        return create_user(name, email, password, Role.ADMIN)
    except Conflict:
        return None  # another process made it first
