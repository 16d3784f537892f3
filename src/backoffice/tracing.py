"""OpenTelemetry tracing, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

Only `create_app()` imports this module, and only then: without the setting nothing of
OpenTelemetry is imported and requests pay nothing for it. With it, each process exports
spans over OTLP/HTTP (`{endpoint}/v1/traces`, in batches) for Flask requests (named by
route template; probes and scrapes left out), the app's own SQLAlchemy statements (not
the embedded broker's: kombu polls its tables every second), Celery tasks (the trace
context travels in the message headers, so a job's span continues the request that
queued it) and httpx calls (the chat gateway). Log lines carry the current `trace_id` and
`span_id`. No span carries a query string: what a user searched for reaches no
collector, as it reaches no log line.

The SDK's own `OTEL_*` variables still apply (`OTEL_SERVICE_NAME`, default `backoffice`;
`OTEL_EXPORTER_OTLP_HEADERS` for a collector's credentials; `OTEL_TRACES_SAMPLER`, ...).
"""

from __future__ import annotations

import os
import re
import threading

import structlog
from flask import Flask
from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqlalchemy_tracing
from opentelemetry.metrics import get_meter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.semconv.metrics import MetricInstruments
from sqlalchemy.engine import Engine

#: Requests not worth a trace: liveness and readiness probes, metric scrapes.
EXCLUDED_URLS = "/health$,/metrics$"
#: Span attributes that hold a URL or a request target: exported up to the `?`.
URL_ATTRIBUTES = ("http.url", "http.target", "url.full")
#: Span attributes that hold nothing but a query string: never exported.
QUERY_ATTRIBUTES = ("url.query",)
_QUERY = re.compile(r"[?#].*", re.DOTALL)

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
            _provider.add_span_processor(WithoutQueryStrings(BatchSpanProcessor(exporter)))
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
    _trace_statements(engine, provider)


def _trace_statements(engine: Engine, provider: TracerProvider) -> None:
    """Spans for the statements of `engine`, and of no other engine.

    `SQLAlchemyInstrumentor().instrument(engine=...)` also wraps `create_engine` and
    `Engine.connect` process-wide, so every engine made afterwards is traced too: the
    embedded broker's (kombu's SQLAlchemy transport), whose polling made a stray trace
    every few hundred milliseconds. So the instrumentation's `EngineTracer`, which it
    builds for the engine it is given, is built here for ours alone, with the tracer and
    the connection-usage counter `instrument()` would make (it also skips the dependency
    check that refuses SQLAlchemy 2.1, whose engine events it still uses). Relies on
    `EngineTracer(tracer, engine, connections_usage)` in
    opentelemetry/instrumentation/sqlalchemy/engine.py; tests/test_tracing.py fails if it
    breaks (a statement's span in the request's trace, none of kombu's).
    """
    tracer = trace.get_tracer(
        "opentelemetry.instrumentation.sqlalchemy", sqlalchemy_tracing, provider
    )
    usage = get_meter(
        "opentelemetry.instrumentation.sqlalchemy", sqlalchemy_tracing
    ).create_up_down_counter(
        name=MetricInstruments.DB_CLIENT_CONNECTIONS_USAGE,
        unit="connections",
        description="The number of connections that are currently in state described by "
        "the state attribute.",
    )
    EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]


class WithoutQueryStrings(SpanProcessor):
    """Hands each ended span on with its URLs cut at the query string, and without
    `url.query`: a search term is the user's, not the collector's. The instrumentations
    set these attributes after any hook of ours could change them (the Flask one sets
    them again after its `request_hook`), so this is done as the span leaves.

    Relies on building a `ReadableSpan` from an ended one's public properties (the SDK
    prefers it made by its tracer; nothing else can change an ended span);
    tests/test_tracing.py fails if that breaks (no search term in any attribute).
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(without_query_strings(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def without_query_strings(span: ReadableSpan) -> ReadableSpan:
    """`span`, or a copy of it whose URL attributes stop at `?` and that has no query."""
    attributes = dict(span.attributes or {})
    for name in QUERY_ATTRIBUTES:
        attributes.pop(name, None)
    for name in URL_ATTRIBUTES:
        if isinstance(value := attributes.get(name), str):
            attributes[name] = _QUERY.sub("", value)
    if attributes == dict(span.attributes or {}):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
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
