"""OpenTelemetry tracing, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

Only `create_app()` imports this module, and only then: without the setting nothing of
OpenTelemetry is imported and requests pay nothing for it. With it, each process exports
spans over OTLP/HTTP (`{endpoint}/v1/traces`, in batches) for Flask requests (named by
route template; probes and scrapes left out), SQLAlchemy statements, Celery tasks (the
trace context travels in the message headers, so a job's span continues the request
that queued it) and httpx calls (the chat gateway). Log lines carry the current
`trace_id` and `span_id`.

The SDK's own `OTEL_*` variables still apply (`OTEL_SERVICE_NAME`, default `backoffice`;
`OTEL_EXPORTER_OTLP_HEADERS` for a collector's credentials; `OTEL_TRACES_SAMPLER`, ...).
"""

from __future__ import annotations

import os
import threading

import structlog
from flask import Flask
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy.engine import Engine

#: Requests not worth a trace: liveness and readiness probes, metric scrapes.
EXCLUDED_URLS = "/health$,/metrics$"

_provider_lock = threading.Lock()
_provider: TracerProvider | None = None


def _tracer_provider(endpoint: str) -> TracerProvider:
    """The process's provider, made by the first app that asks (OpenTelemetry keeps one
    per process; a second app in the same process, as in tests, shares it)."""
    global _provider  # OpenTelemetry's provider is process-wide by design
    with _provider_lock:
        if _provider is None:
            name = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "backoffice"}
            _provider = TracerProvider(resource=Resource.create(name))
            exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
            _provider.add_span_processor(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(_provider)
            # Process-wide hooks (Celery's signals, httpx's transports): once.
            CeleryInstrumentor().instrument(tracer_provider=_provider)  # type: ignore[no-untyped-call]
            HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
        return _provider


def init_tracing(app: Flask, engine: Engine) -> None:
    """Trace `app`'s requests and `engine`'s statements (and, process-wide, Celery tasks
    and httpx calls) to the OTLP endpoint the app's config names."""
    provider = _tracer_provider(app.config["OTEL_EXPORTER_OTLP_ENDPOINT"])
    FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]
        app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS, enable_commenter=False
    )
    # The instrumentation declares SQLAlchemy < 2.1 and would skip 2.1 (with an error in
    # the log); it only listens to engine events that 2.1 still has. Guarded by
    # tests/test_tracing.py (a statement's span in the request's trace).
    SQLAlchemyInstrumentor().instrument(
        engine=engine, tracer_provider=provider, skip_dep_check=True
    )


def add_trace_ids(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """A structlog processor: the current span's ids, when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event
