"""Prometheus metrics, `GET /metrics`, counted over every process of a host.

**Multiprocess mode.** prometheus_client decides where values live once, when it is
first imported: with `PROMETHEUS_MULTIPROC_DIR` in the environment, every process (each
Granian worker, each Celery worker) keeps its values in memory-mapped files there, one
per process id and metric type, and a scrape, answered by whichever web worker gets it,
adds the files up (and those of its subdirectories: processes of another container,
whose ids may repeat ours, write there). The variable must therefore be set before
Python starts, never from a setting: `deploy/serve`, the Procfile and the Dockerfile set
it. Each directory is emptied once, by what starts the processes writing to it, before
any exists (`deploy/serve` or Gunicorn's `on_starting` for the web server; the compose
worker's command for its own subdirectory): files of an earlier run's processes would
otherwise be added in forever. Without the variable (`make dev`: one process) the
process's own values are served.

**What is counted where.** Requests, in-flight requests, pool connections, failed
logins, 429s and chat calls are counted by the process that sees them, as they happen,
and must stay cheap (the read path is benchmarked): per request, a middleware and one
`after_request` hook, one context lookup, a cached series, four writes. Jobs and webhook
events are read from the database at scrape time, one grouped query per queue, by
*readers*: `add_reader(app, name, reader)` is the hook for more scrape-time values.

Not prometheus-flask-exporter: its multi-process mode is built on Gunicorn/uWSGI hooks and it
adds two hooks per request (docs/architecture/libraries.md).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry
from werkzeug.exceptions import NotFound

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

from backoffice.config import ConfigError, refuse
from backoffice.database import utcnow
from backoffice.errors import Unauthorized
from backoffice.extensions import db

log = structlog.get_logger(__name__)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class MetricsTokenRequired(Unauthorized):
    challenge = 'Bearer realm="metrics"'


def prepare_multiprocess_dir(value: str | None) -> None:
    """Make sure the directory PROMETHEUS_MULTIPROC_DIR names (`value`) can take this
    process's metric files, before the first metric below opens one there (otherwise a
    traceback from prometheus-client, and no command at all runs).

    A missing directory is made when its parent exists: a fresh checkout's first
    `flask db upgrade`, with the variable set as deploy/serve sets it, before anything
    made it. One level only: a mistyped path is refused, not built.
    """
    if not value:
        return
    directory = Path(value)
    try:
        directory.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise ConfigError(
            f"{MULTIPROC_DIR_VARIABLE}={value} names a directory whose parent does not exist"
        ) from None
    except FileExistsError:
        raise ConfigError(f"{MULTIPROC_DIR_VARIABLE}={value} is not a directory") from None
    except OSError as error:
        raise ConfigError(
            f"{MULTIPROC_DIR_VARIABLE}={value} cannot be made: {error.strerror}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{MULTIPROC_DIR_VARIABLE}={value} is a directory this process may not write to"
        )


# At import: every entry point imports this module before it can read any setting, and
# the metrics without labels below open their files at once.
try:
    prepare_multiprocess_dir(os.environ.get(MULTIPROC_DIR_VARIABLE))
except ConfigError as refused:
    refuse(refused)

#: The route label of a request that matched no route (or no method of one): a fixed
#: value, so probes of random paths cannot mint label values.
UNMATCHED_ROUTE = "unmatched"
#: Methods kept as they are in the `method` label; any other is "OTHER".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# --- what processes count as it happens --------------------------------------------

REQUESTS = Counter(
    "backoffice_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "backoffice_http_request_duration_seconds",
    "Time to answer an HTTP request (until the headers of a streamed answer).",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge(
    "backoffice_http_requests_in_flight",
    "HTTP requests being answered, over every live web process.",
    multiprocess_mode="livesum",
)
DB_CHECKED_OUT = Gauge(
    "backoffice_db_pool_checked_out",
    "Database connections checked out of the pool, over every live process.",
    multiprocess_mode="livesum",
)
LOGIN_FAILURES = Counter(
    "backoffice_login_failures_total",
    "Password checks that failed: a wrong email or password at login, or a wrong "
    "current password on a password change.",
)
RATE_LIMITED = Counter(
    "backoffice_rate_limited_total",
    "Requests refused with 429, by limit (password, sign-up, chat).",
    ["limit"],
)
WORK_RUNS = Counter(
    "backoffice_work_runs_total",
    "Runs of background work by queue and outcome (the status recorded, retrying, or lease_lost).",
    ["queue", "outcome"],
)
WORK_SECONDS = Histogram(
    "backoffice_work_run_duration_seconds",
    "Time a run of background work took, by queue.",
    ["queue"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0),
)
LLM_SECONDS = Histogram(
    "backoffice_llm_call_duration_seconds",
    "Chat calls to the model server, by outcome and whether streamed (to the last byte).",
    ["outcome", "stream"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0),
)
LLM_TOKENS = Counter(
    "backoffice_llm_tokens_total",
    "Tokens spent on chat calls, as the model server counted them, by kind.",
    ["kind"],
)
MODEL_LOADS = Counter(
    "backoffice_model_loads_total",
    "Packaged models loaded into a worker process, by model: once per process that ran one.",
    ["model"],
)
INFERENCE_SECONDS = Histogram(
    "backoffice_inference_seconds",
    "Time the model took on one text of a batch, by job type (sentiment, language).",
    ["type"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)
INFERENCE_TEXTS = Counter(
    "backoffice_inference_texts_total",
    "Texts the models have processed, by job type: texts per second is its rate().",
    ["type"],
)


RETENTION_DELETED = Counter(
    "backoffice_retention_deleted_rows_total",
    "Rows deleted by retention (a worker's housekeeping or `flask prune`), by table.",
    ["table"],
)


def count_pruned(deleted: Mapping[str, int]) -> None:
    for table, rows in deleted.items():
        RETENTION_DELETED.labels(table).inc(rows)


def retention_overdue(ages: Mapping[str, float | None]) -> GaugeMetricFamily:
    """`housekeeping.overdue_ages` as a gauge: a stuck pruner shows as a growing age."""
    return gauge(
        "backoffice_retention_overdue_seconds",
        "Per table, how long the row retention should have deleted longest ago has been due "
        "(absent: none is due). Grows while pruning is stuck.",
        "table",
        ages,
    )


def count_login_failure() -> None:
    LOGIN_FAILURES.inc()


def count_rate_limited(limit: str) -> None:
    RATE_LIMITED.labels(limit).inc()


def observe_work_run(queue: str, outcome: str, seconds: float) -> None:
    WORK_RUNS.labels(queue, outcome).inc()
    WORK_SECONDS.labels(queue).observe(seconds)


def count_model_load(model: str) -> None:
    MODEL_LOADS.labels(model).inc()


def observe_inference(job_type: str, seconds: Sequence[float]) -> None:
    """The model's time on each of a few texts of a batch (reported as the batch goes,
    with its progress, so texts per second moves during a long batch too)."""
    histogram = INFERENCE_SECONDS.labels(job_type)
    for each in seconds:
        histogram.observe(each)
    INFERENCE_TEXTS.labels(job_type).inc(len(seconds))


def observe_llm_call(
    outcome: str,
    stream: bool,
    seconds: float,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> None:
    LLM_SECONDS.labels(outcome, "true" if stream else "false").observe(seconds)
    if prompt_tokens:
        LLM_TOKENS.labels("prompt").inc(prompt_tokens)
    if completion_tokens:
        LLM_TOKENS.labels("completion").inc(completion_tokens)


# --- requests -----------------------------------------------------------------------

#: (method, route, status) -> that series' counter and histogram, so a request does not
#: pay for `labels()` (string conversions, a lock) each time. As bounded as the labels
#: themselves; two threads racing on a new key store the same objects, so no lock.
_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


#: Where `_InFlight` leaves a request's start time for `_count_request`.
_STARTED = "backoffice.metrics.started"


class _InFlight:
    """WSGI middleware: count the request in flight for exactly as long as the app works
    on it (whatever happens inside), and note when it started. Cheaper than `g` and
    Flask hooks, which cost a context lookup each."""

    def __init__(self, wsgi_app: WSGIApplication) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[_STARTED] = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            IN_FLIGHT.dec()


def _count_request(response: Response) -> Response:
    # Werkzeug's documented way to unwrap a proxy: one context lookup instead of four.
    current = request._get_current_object()  # type: ignore[attr-defined]
    started = current.environ.get(_STARTED)
    if started is None:  # served without the middleware (e.g. a test's request context)
        return response
    rule = current.url_rule
    method = current.method if current.method in _METHODS else "OTHER"
    key = (method, rule.rule if rule is not None else UNMATCHED_ROUTE, response.status_code)
    series = _SERIES.get(key)
    if series is None:
        series = _SERIES[key] = (REQUESTS.labels(*key), REQUEST_SECONDS.labels(*key))
    series[0].inc()
    series[1].observe(time.perf_counter() - started)
    return response


def _watch_pool(engine: Engine) -> None:
    """Count this process's connections out of the pool: +1 at a checkout, -1 when that
    connection comes back. The mark on the pool's entry (its `record_info`, kept even
    when the connection is invalidated) makes a repeated checkout event, or a checkin of
    a connection never counted, change nothing, so the count cannot drift."""

    def checked_out(_dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        marks = record.record_info
        if marks is not None and not marks.get(_OUT):
            marks[_OUT] = True
            DB_CHECKED_OUT.inc()

    def checked_in(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        marks = record.record_info
        if marks is not None and marks.pop(_OUT, False):
            DB_CHECKED_OUT.dec()

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)


#: The mark `_watch_pool` leaves on a pool entry whose connection it counted as out.
_OUT = "backoffice.metrics.checked_out"


# --- scrape-time readers --------------------------------------------------------------

#: Reads values at scrape time, in an app context, given the scrape's time (UTC): the
#: metric families to add (`gauge()` and `counter()` make them from a mapping).
Reader = Callable[[datetime], Iterable[Metric]]


def gauge(
    name: str, documentation: str, label: str, values: Mapping[str, float | None]
) -> GaugeMetricFamily:
    """A gauge family with one sample per `label` value; a None value is left out."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        if value is not None:
            family.add_metric([key], value)
    return family


def counter(
    name: str, documentation: str, label: str, values: Mapping[str, float | None]
) -> CounterMetricFamily:
    """A counter family (`name` without `_total`) from running totals kept elsewhere,
    e.g. in the database; a None value is left out."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        if value is not None:
            family.add_metric([key], value)
    return family


def add_reader(app: Flask, name: str, reader: Reader) -> None:
    """Add a scrape-time reader (from `create_app()`). A reader that fails (the database
    is down) is logged and left out of that scrape, and `backoffice_metrics_reader_up`
    says so; every other value is still served."""
    _state(app).readers[name] = reader


@dataclass
class _Metrics:
    token: str
    readers: dict[str, Reader] = field(default_factory=dict)


def _state(app: Flask) -> _Metrics:
    state: _Metrics = app.extensions["metrics"]
    return state


class _ReadersCollector(Collector):
    """Runs the app's readers for one scrape."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        up = GaugeMetricFamily(
            "backoffice_metrics_reader_up",
            "1 when a scrape-time reader answered this scrape, 0 when it failed.",
            labels=["reader"],
        )
        for name, reader in _state(self._app).readers.items():
            try:
                families = list(reader(now))
            except Exception as error:  # one reader's failure must not hide every metric
                log.warning("metrics_reader_failed", reader=name, error=type(error).__name__)
                up.add_metric([name], 0)
                continue
            finally:
                db.session.remove()  # a failed query must not leave the session broken
            up.add_metric([name], 1)
            yield from families
        yield up


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


class _FilesCollector(Collector):
    """Every process's files added up: those in the directory (this server's workers, and
    Celery workers of the same machine) and those one level below it, where processes
    that do not share our process ids write (a worker container sharing the volume,
    `PROMETHEUS_MULTIPROC_DIR=<dir>/worker`), so two processes never share a file."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def collect(self) -> Iterable[Metric]:
        files = [*self._path.glob("*.db"), *self._path.glob("*/*.db")]
        merged: Iterable[Metric] = MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
            [str(file) for file in files], accumulate=True
        )
        return merged


def requests_by_class() -> dict[str, float]:
    """Requests answered so far by status class ("2xx", ..., "5xx"), over every process
    that writes to PROMETHEUS_MULTIPROC_DIR (the web server's workers), else this process:
    the totals the activity tally turns into requests per hour (`REQUEST_CLASSES`)."""
    path = multiprocess_dir()
    source: Collector = _FilesCollector(path) if path is not None else REGISTRY
    totals: dict[str, float] = {}
    for family in source.collect():
        if family.name != "backoffice_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                status_class = f"{str(sample.labels['status'])[:1]}xx"
                totals[status_class] = totals.get(status_class, 0.0) + sample.value
    return totals


def exposition(app: Flask) -> bytes:
    """The text a scrape gets: every process's values added up, then the readers'."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path is not None:
        registry.register(_FilesCollector(path))
    else:
        registry.register(REGISTRY)  # this process's own values
    registry.register(_ReadersCollector(app))
    return generate_latest(registry)


# --- the endpoint ----------------------------------------------------------------------

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    """Prometheus text format, for the bearer of METRICS_TOKEN only (404 when unset)."""
    token = _state(current_app).token
    if not token:
        raise NotFound("Metrics are off on this server (METRICS_TOKEN is not set).")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.encode()
    ):
        raise MetricsTokenRequired("Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.")
    response = current_app.response_class(exposition(current_app), mimetype=None)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def init_app(app: Flask) -> None:
    """Count requests and the database pool, serve `/metrics`. Readers are added by
    `create_app()` (the work queues') with `add_reader`."""
    app.extensions["metrics"] = _Metrics(token=app.config["METRICS_TOKEN"])
    app.wsgi_app = _InFlight(app.wsgi_app)  # type: ignore[method-assign]
    app.after_request(_count_request)
    with app.app_context():
        _watch_pool(db.engine)
    app.register_blueprint(bp)


# --- process lifetimes -----------------------------------------------------------------


def process_ended(pid: int) -> None:
    """Forget a process's live gauges (in-flight requests, checked-out connections): from
    the server, when one of its workers exits. Its counters stay in the sums."""
    path = multiprocess_dir()
    if path is not None:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
