from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, ResourceMixin
from backoffice.work import LeasedWorkMixin


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobType(StrEnum):
    TEXT_ANALYSIS = "text-analysis"
    INVENTORY_REPORT = "inventory-report"
    SENTIMENT = "sentiment"
    LANGUAGE = "language"


class Job(LeasedWorkMixin, ResourceMixin, Base):
    """A unit of background work, run through the leased-work engine (`backoffice.work`)."""

    __tablename__ = "jobs"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[int] = mapped_column(default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result_csv: Mapped[str | None] = mapped_column(Text, deferred=True)
    error: Mapped[str | None] = mapped_column(String(1000))

    __table_args__ = (
        Index("ix_jobs_user_id_id", "user_id", "id"),
        Index("ix_jobs_status_enqueued_at", "status", "enqueued_at"),
        # Retention finds finished jobs by status and age (`backoffice.housekeeping`).
        Index("ix_jobs_status_finished_at", "status", "finished_at"),
    )
