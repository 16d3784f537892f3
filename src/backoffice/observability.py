"""Request ids and logs: one JSON line per request, the request id in every line."""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

import orjson
import structlog
from flask import Flask, Response, g, request
from structlog.tracebacks import ExceptionDictTransformer

REQUEST_ID_HEADER = "X-Request-ID"
#: An incoming id is kept only if it is short and plain: it ends up in logs and bodies.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = structlog.get_logger("backoffice.request")


def configure_logging(level: str, json_lines: bool, trace_ids: bool = False) -> None:
    """Configure structlog for JSON lines or a console, once per process.

    Logging is process-wide: the first app created in a process sets it up, and later
    apps (tests build several) share it, so loggers can be cached on first use. With
    `trace_ids` (tracing is on) every line carries the current span's ids.
    """
    if structlog.is_configured():
        return
    tracing: list[structlog.typing.Processor] = []
    if trace_ids:
        # Imported only when tracing is on: otherwise nothing loads OpenTelemetry.
        from backoffice.tracing import add_trace_ids

        tracing.append(add_trace_ids)
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level)
    renderer: structlog.typing.Processor
    if json_lines:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory: structlog.typing.WrappedLogger = structlog.BytesLoggerFactory()
    else:
        renderer = structlog.dev.ConsoleRenderer()
        factory = structlog.PrintLoggerFactory()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *tracing,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks without frame locals: a local may hold a password or a token.
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
            if json_lines
            else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


#: `REQUEST_ID_HEADER` as the WSGI environ names it.
_REQUEST_ID_KEY = f"HTTP_{REQUEST_ID_HEADER.upper().replace('-', '_')}"


def _start_request() -> None:
    incoming = request.environ.get(_REQUEST_ID_KEY, "")
    request_id = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    state = g._get_current_object()
    state.request_id = request_id
    state.request_started = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)


def _finish_request(response: Response) -> Response:
    state = g._get_current_object()
    current = request._get_current_object()  # type: ignore[attr-defined]
    response.headers[REQUEST_ID_HEADER] = state.request_id
    duration_ms = (time.perf_counter() - state.request_started) * 1000
    log.info(
        "request",
        method=current.method,
        path=current.path,
        status=response.status_code,
        duration_ms=round(duration_ms, 2),
        user=state.get("user_id"),
    )
    return response


def init_request_logging(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)
