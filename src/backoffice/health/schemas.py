from __future__ import annotations

from typing import Literal

from backoffice.schemas import OutputModel, Timestamp


class ServiceInfo(OutputModel):
    status: Literal["online"]
    message: str
    docs: str
    version: str


class Liveness(OutputModel):
    status: Literal["healthy"]


class Readiness(OutputModel):
    status: Literal["ok", "degraded"]
    timestamp: Timestamp
    version: str
    checks: dict[str, str]
