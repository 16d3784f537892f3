from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, ResourceMixin


class ChatOutcome(StrEnum):
    """How a chat call that reached for the model server ended."""

    COMPLETED = "completed"
    #: An error status, garbage, the wrong shape, a cut stream, or no connection (502).
    FAILED = "failed"
    #: No answer, or no next delta, within LLM_TIMEOUT (504).
    TIMED_OUT = "timed_out"
    #: The client went away in the middle of a stream.
    CANCELLED = "cancelled"


class ChatUsage(ResourceMixin, Base):
    """One chat call and the tokens it spent, as the model server reported them.

    The token counts are null when the server did not report them (a failed call, a
    stream cut short, a server that does not count).
    """

    __tablename__ = "chat_usage"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200))
    streamed: Mapped[bool]
    outcome: Mapped[str] = mapped_column(String(16))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    total_tokens: Mapped[int | None]
    latency_ms: Mapped[int]

    __table_args__ = (
        Index("ix_chat_usage_user_id_id", "user_id", "id"),
        CheckConstraint(
            "outcome IN ('completed', 'failed', 'timed_out', 'cancelled')", name="outcome_known"
        ),
    )


class ChatCall(Base):
    """A chat call in flight, holding one of its user's `CHAT_CALLS_PER_USER` places.

    A place is a row keyed by (user, slot), so two processes can never take the same one
    (the primary key decides); the call deletes it when it ends. `expires_at` frees the
    place of a process that died mid-call: no call outlives it (`tools.capacity`).
    """

    __tablename__ = "chat_calls"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(primary_key=True)
    #: Which call holds it: only that call gives it back.
    holder: Mapped[uuid.UUID]
    expires_at: Mapped[datetime]
