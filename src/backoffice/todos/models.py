from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, ResourceMixin


class Todo(ResourceMixin, Base):
    """A person's task. `version` guards concurrent writes and feeds the ETag."""

    __tablename__ = "todos"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(500))
    done: Mapped[bool] = mapped_column(default=False)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}
    # One index serves both the owner's keyset pages (user_id = ? AND id < ? ORDER BY id
    # DESC) and the ON DELETE CASCADE lookup by user_id.
    __table_args__ = (Index("ix_todos_user_id_id", "user_id", "id"),)
