from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.database import Base, ResourceMixin


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


class Order(ResourceMixin, Base):
    """Units taken from stock for someone. `version` guards concurrent changes (a cancel
    racing a payment) and feeds the ETag.

    `pending` → `paid` (a `payment_success` webhook) → `fulfilled` (an admin), or
    `pending` → `cancelled` (the stock goes back).
    """

    __tablename__ = "orders"

    #: Kept when the person is deleted: an order is a record of stock that moved.
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(1000))
    total_quantity: Mapped[int]
    version: Mapped[int] = mapped_column(default=1)
    paid_at: Mapped[datetime | None]
    fulfilled_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    #: The partner's payment id when it sent one, and the webhook event that paid.
    payment_reference: Mapped[str | None] = mapped_column(String(255))
    payment_event_id: Mapped[uuid.UUID | None]

    lines: Mapped[list[OrderLine]] = relationship(
        lazy="selectin", order_by="OrderLine.line_no", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_orders_user_id_id", "user_id", "id"),
        Index("ix_orders_status_id", "status", "id"),
    )


class OrderLine(Base):
    """Units of one item in an order. The item's name is kept: the item may go later."""

    __tablename__ = "order_lines"

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int]

    __table_args__ = (Index("ix_order_lines_item_id", "item_id"),)
