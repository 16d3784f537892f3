from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, ResourceMixin
from backoffice.work import LeasedWorkMixin


class EventStatus(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"
    #: No handler knows the event's type: visible, filterable, replayable once one does.
    IGNORED = "ignored"


class WebhookEvent(LeasedWorkMixin, ResourceMixin, Base):
    """A partner's delivery, stored before it is acknowledged and processed through the
    leased-work engine. `(source, delivery_id)` is unique: a redelivery, even a concurrent
    one, finds the first copy."""

    __tablename__ = "webhook_events"

    source: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    last_error: Mapped[str | None] = mapped_column(String(1000))

    __table_args__ = (
        UniqueConstraint("source", "delivery_id"),
        Index("ix_webhook_events_status_enqueued_at", "status", "enqueued_at"),
        # Retention finds finished events by status and age (`backoffice.housekeeping`).
        Index("ix_webhook_events_status_finished_at", "status", "finished_at"),
    )
