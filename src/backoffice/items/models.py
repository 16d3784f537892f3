from __future__ import annotations

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, ResourceMixin


class Item(ResourceMixin, Base):
    """A stock-keeping unit. `version` guards concurrent writes and feeds the ETag."""

    __tablename__ = "items"

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    quantity: Mapped[int]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (CheckConstraint("quantity >= 0", name="quantity_not_negative"),)
