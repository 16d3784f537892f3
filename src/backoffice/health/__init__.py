"""The service's own endpoints: `/`, liveness `/health`, readiness `{prefix}/health`."""
