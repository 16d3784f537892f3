from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, ResourceMixin


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class User(ResourceMixin, Base):
    """A person. `token_generation` is bumped to void every token issued so far."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER)
    active: Mapped[bool] = mapped_column(default=True)
    token_generation: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        Index("uq_users_email_lower", func.lower(email), unique=True),
        CheckConstraint("role IN ('admin', 'member')", name="role_known"),
    )
