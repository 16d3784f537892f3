from __future__ import annotations

from typing import Any

from apiflask.views import MethodView
from flask import url_for

from backoffice.database import utcnow
from backoffice.dependencies import RETRY_AFTER_SECONDS
from backoffice.health import service
from backoffice.health.schemas import Liveness, Readiness, ServiceInfo
from backoffice.output import Blueprint

#: Mounted at the root: these answer the same wherever the API prefix points.
bp = Blueprint("service", __name__, tag="Service")
#: Mounted under the API prefix, beside the resources it vouches for.
readiness_bp = Blueprint("readiness", __name__, tag="Service")

#: A degraded readiness answer has the same shape as a healthy one, not a problem body.
DEGRADED: dict[int | str, dict[str, str | dict[str, dict[str, Any]]]] = {
    503: {
        "description": "A dependency is down (`status: degraded`, with `Retry-After`)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}},
    }
}


class ServiceIndex(MethodView):
    """`/`: what this service is."""

    @bp.output(ServiceInfo)
    @bp.doc(operation_id="index")
    def get(self) -> Any:
        """Service information"""
        return {
            "status": "online",
            "message": "Server is ready!",
            "docs": url_for("openapi.docs"),
            "version": service.VERSION,
        }


class LivenessCheck(MethodView):
    """`/health`: the process answers."""

    @bp.output(Liveness)
    @bp.doc(operation_id="liveness")
    def get(self) -> Any:
        """Liveness: the process answers (no I/O)"""
        return {"status": "healthy"}


class ReadinessCheck(MethodView):
    """`{prefix}/health`: every dependency answers."""

    @readiness_bp.output(Readiness)
    @readiness_bp.doc(operation_id="readiness", responses=DEGRADED)
    def get(self) -> Any:
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


bp.add_url_rule("/", view_func=ServiceIndex.as_view("index"))
bp.add_url_rule("/health", view_func=LivenessCheck.as_view("liveness"))
readiness_bp.add_url_rule("/health", view_func=ReadinessCheck.as_view("readiness"))
