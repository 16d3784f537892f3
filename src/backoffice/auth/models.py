from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, ResourceMixin


class ApiKey(ResourceMixin, Base):
    """A machine client's key. Only its SHA-256 is stored; `prefix` finds it."""

    __tablename__ = "api_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    # The owner's keyset pages (user_id = ? AND id < ? ORDER BY id DESC) and the count of
    # their live keys, from one index.
    __table_args__ = (Index("ix_api_keys_user_id_id", "user_id", "id"),)


class RevokedToken(Base):
    """A JWT ended before its expiry (logout). Kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
