from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import url_for

from backoffice.database import utcnow
from backoffice.dependencies import RETRY_AFTER_SECONDS
from backoffice.health import service
from backoffice.health.schemas import Liveness, Readiness, ServiceInfo

#: Mounted at the root: these answer the same wherever the API prefix points.
bp = APIBlueprint("service", __name__, tag="Service")
#: Mounted under the API prefix, beside the resources it vouches for.
readiness_bp = APIBlueprint("readiness", __name__, tag="Service")

#: A degraded readiness answer has the same shape as a healthy one, not a problem body.
DEGRADED: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    503: {
        "description": "A dependency is down (`status: degraded`, with `Retry-After`)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}},
    }
}


@bp.get("/")
@bp.output(ServiceInfo)
def index() -> Any:
    """Service information"""
    return {
        "status": "online",
        "message": "Server is ready!",
        "docs": url_for("openapi.docs"),
        "version": service.VERSION,
    }


@bp.get("/health")
@bp.output(Liveness)
def liveness() -> Any:
    """Liveness: the process answers (no I/O)"""
    return {"status": "healthy"}


@readiness_bp.get("/health")
@readiness_bp.output(Readiness)
@readiness_bp.doc(responses=DEGRADED)
def readiness() -> Any:
    """Readiness: every dependency answers"""
    checks = service.run_checks()
    healthy = all(result == "ok" for result in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "timestamp": utcnow(),
        "version": service.VERSION,
        "checks": checks,
    }
    if healthy:
        return body, 200
    return body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
