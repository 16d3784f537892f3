"""Tracing (OpenTelemetry, when OTEL_EXPORTER_OTLP_ENDPOINT is set) and the request id
that follows work into Celery.

Tracing is process-wide once on, so traced apps run in processes of their own: a short
script that serves requests through the test client, and a real Celery worker, both
exporting to a fake OTLP/HTTP collector, a real HTTP server in this process.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support import TEST_SECRET_KEY, eventually, start_job, wait_for_job

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    service: str
    attributes: dict[str, Any]


class Collector(http.server.ThreadingHTTPServer):
    """A fake OpenTelemetry collector: OTLP/HTTP (protobuf) on `/v1/traces`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class _CollectorHandler(http.server.BaseHTTPRequestHandler):
    server: Collector

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what arrived, not an access log."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                spans.extend(
                    Span(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        service=str(resource.get("service.name")),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    )
                    for span in scope_spans.spans
                )
        with self.server.lock:
            self.server.spans.extend(spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


#: A traced web process: migrates its database, logs a member in, checks liveness, and
#: queues a job under the request id it is given; prints the job's id.
WEB = """
import sys
import flask_migrate
from backoffice import create_app
from backoffice.config import TestingConfig
from backoffice.users import service as users
from backoffice.users.models import Role

database, broker, endpoint, request_id, secret = sys.argv[1:]
app = create_app(TestingConfig.from_env({
    "SECRET_KEY": secret, "DATABASE_URL": database, "CELERY_BROKER_URL": broker,
    "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
}))
with app.app_context():
    flask_migrate.upgrade()
    users.create_user("Tracy", "tracy@example.com", "a long secret", Role.MEMBER)
client = app.test_client()
login = {"email": "tracy@example.com", "password": "a long secret"}
token = client.post("/api/auth/token", json=login).json["access_token"]
assert client.get("/health").status_code == 200
job = client.post(
    "/api/jobs",
    json={"type": "text-analysis", "input": {"text": "The cat sat."}},
    headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id},
)
assert job.status_code == 202, job.json
print(job.json["id"])
"""


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def test_a_request_and_the_job_it_queued_are_one_trace(
    collector: Collector, tmp_path: Path
) -> None:
    request_id = f"trace-test-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'traced.db'}",
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within 0.2 s, not 5 s
        "INSTANCE_PATH": str(tmp_path),
        "LOG_LEVEL": "INFO",
    }
    queued = subprocess.run(  # noqa: S603 (our own code)
        [
            sys.executable,
            "-c",
            WEB,
            env["DATABASE_URL"],
            env["CELERY_BROKER_URL"],
            collector.url,
            request_id,
            TEST_SECRET_KEY,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.strip().splitlines()[-1]
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(  # noqa: S603 (our own code)
            [
                sys.executable,
                *("-m", "celery", "-A", "backoffice.worker", "worker", "--pool", "solo"),
                *("--without-heartbeat", "--without-gossip", "--without-mingle"),
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        done = eventually(
            lambda: [
                line
                for line in _log_lines(log)
                if line.get("event") == "work_done" and line.get("id") == job_id
            ],
            timeout=90,
        )[0]
        spans = eventually(
            collector.received,
            lambda spans: any(span.name == "run/backoffice.jobs.run" for span in spans),
            timeout=30,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    request = next(s for s in spans if s.attributes.get("http.route") == "/api/jobs")
    assert request.name == "POST /api/jobs"
    assert request.service == "backoffice"
    trace = [s for s in spans if s.trace_id == request.trace_id]
    assert any(s.attributes.get("db.system") == "sqlite" for s in trace)  # SQLAlchemy
    run = next(s for s in spans if s.name == "run/backoffice.jobs.run")
    assert run.trace_id == request.trace_id  # the worker continued the request's trace
    # The job's log line carries the request id that queued it, and the trace.
    assert done["request_id"] == request_id
    assert done["trace_id"] == request.trace_id
    assert done["status"] == "succeeded"
    # Probes are not traced.
    assert not any(s.attributes.get("http.route") == "/health" for s in spans)
    # Nor is the embedded broker's own SQL (kombu polls its tables every second, and
    # published the job's message there): only the app's engine is.
    kombu = [s.name for s in spans if any("kombu_" in str(v) for v in s.attributes.values())]
    assert kombu == []


#: A traced web process, with old and new HTTP attribute names both on: it searches the
#: items for a term twice, as servers that pass the raw target (RAW_URI, REQUEST_URI; the
#: instrumentation makes it `http.target`) and servers that do not (`http.url`) do.
SEARCH = """
import sys
import flask_migrate
from backoffice import create_app
from backoffice.config import TestingConfig
from backoffice.users import service as users
from backoffice.users.models import Role

database, endpoint, term, secret = sys.argv[1:]
app = create_app(TestingConfig.from_env({
    "SECRET_KEY": secret, "DATABASE_URL": database, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
}))
with app.app_context():
    flask_migrate.upgrade()
    users.create_user("Tracy", "tracy@example.com", "a long secret", Role.MEMBER)
client = app.test_client()
login = {"email": "tracy@example.com", "password": "a long secret"}
token = client.post("/api/auth/token", json=login).json["access_token"]
bearer = {"Authorization": f"Bearer {token}"}
target = f"/api/items?q={term}&limit=5"
assert client.get(target, headers=bearer).status_code == 200
no_raw_target = {"REQUEST_URI": "", "RAW_URI": ""}
assert client.get(target, headers=bearer, environ_overrides=no_raw_target).status_code == 200
"""


def test_spans_carry_paths_without_the_query_string(collector: Collector, tmp_path: Path) -> None:
    """What a user searched for reaches no collector, as it reaches no log line: every
    URL-ish attribute (`http.url`, `http.target`, `url.full`; `url.query` not at all) is
    the path alone, whichever attribute names the instrumentation uses."""
    term = f"secret-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup",  # the old names and the new ones
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "INSTANCE_PATH": str(tmp_path),
    }
    database = f"sqlite:///{tmp_path / 'traced.db'}"
    searched = subprocess.run(  # noqa: S603 (our own code)
        [sys.executable, "-c", SEARCH, database, collector.url, term, TEST_SECRET_KEY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert searched.returncode == 0, searched.stderr
    spans = eventually(
        collector.received,
        lambda spans: (
            len([s for s in spans if s.attributes.get("http.route") == "/api/items"]) == 2
        ),
        timeout=30,
    )
    searches = [s for s in spans if s.attributes.get("http.route") == "/api/items"]
    assert {s.attributes.get("http.target") for s in searches} == {None, "/api/items"}
    assert {s.attributes.get("http.url") for s in searches} == {None, "http://localhost/api/items"}
    assert {s.attributes.get("url.path") for s in searches} - {None} == {"/api/items"}
    assert all("url.query" not in s.attributes for s in searches)
    leaks = [(s.name, k) for s in spans for k, v in s.attributes.items() if term in str(v)]
    assert leaks == []


#: An app without OTEL_EXPORTER_OTLP_ENDPOINT serving a request: what of tracing it
#: loaded. (redis-py loads OpenTelemetry's API on its own when it is installed; the SDK,
#: the exporter and the instrumentations are ours to load.)
UNTRACED = """
import sys
from backoffice import create_app
from backoffice.config import TestingConfig
app = create_app(TestingConfig.from_env({"DATABASE_URL": sys.argv[1]}))
assert app.test_client().get("/health").status_code == 200
ours = ("backoffice.tracing", "opentelemetry.sdk.trace", "opentelemetry.exporter",
        "opentelemetry.instrumentation")
print(sorted(name for name in sys.modules if name.startswith(ours)))
"""


def test_without_an_endpoint_no_tracing_is_loaded(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    ran = subprocess.run(  # noqa: S603 (our own code)
        [sys.executable, "-c", UNTRACED, f"sqlite:///{tmp_path / 'db.sqlite'}"],
        cwd=ROOT,
        env={**env, "INSTANCE_PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert ran.stdout.strip().splitlines()[-1] == "[]"


def test_a_jobs_log_lines_carry_the_request_id_that_queued_it(
    client: FlaskClient, worker: subprocess.Popen[bytes], worker_logs: Path
) -> None:
    request_id = f"job-log-{uuid.uuid4().hex[:12]}"
    client.environ_base["HTTP_X_REQUEST_ID"] = request_id
    url, accepted = start_job(client, {"type": "text-analysis", "input": {"text": "A cat."}})
    assert wait_for_job(client, url)["status"] == "succeeded"

    def lines() -> list[dict[str, Any]]:
        return [
            line
            for path in worker_logs.glob("*.log")
            for line in _log_lines(path)
            if line.get("id") == accepted["id"]
        ]

    found = eventually(lines, lambda found: any(line["event"] == "work_done" for line in found))
    assert all(line["request_id"] == request_id for line in found)
    assert all(line["task_id"] for line in found)
