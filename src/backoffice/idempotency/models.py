from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.database import Base, ResourceMixin


class IdempotencyRecord(ResourceMixin, Base):
    """One `Idempotency-Key` a caller has used: in flight until `status_code` is set."""

    __tablename__ = "idempotency_records"

    #: Whose key this is: keys are scoped per caller ("" before authentication exists).
    principal: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    #: Indexed: retention deletes by it (`backoffice.housekeeping`).
    expires_at: Mapped[datetime] = mapped_column(index=True)
    status_code: Mapped[int | None]
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (UniqueConstraint("principal", "key"),)
