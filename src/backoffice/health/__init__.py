"""The service's own endpoints: `/`, liveness `/health`, readiness `{prefix}/health`."""

from apiflask import APIBlueprint

#: Mounted at the root: these answer the same wherever the API prefix points.
bp = APIBlueprint("service", __name__, tag="Service")
#: Mounted under the API prefix, beside the resources it vouches for.
readiness_bp = APIBlueprint("readiness", __name__, tag="Service")

from backoffice.health import routes as routes  # noqa: E402  (registers the views)
