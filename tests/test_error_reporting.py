"""Optional error reporting (issue 21): with SENTRY_DSN set, an unexpected error reaches
the ingest as an envelope, and nothing secret goes with it; without it, the SDK is not
even loaded.

The ingest is a real local HTTP server standing in for Sentry; the app runs in a process
of its own behind a real HTTP server (the SDK is process-wide state, never this test
process's).
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import (
    PROBLEM,
    ROOT,
    TEST_SECRET_KEY,
    eventually,
    free_port,
    healthy,
    process_environment,
)

#: Every value below is planted: the ingest's bytes must hold none of them.
LLM_KEY = "sk-planted-llm-key-0b7e1c"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"planted-webhook-secret-9f3a").decode()
ENV_TOKEN = "planted-env-token-5d21"
BROKER_PASSWORD = "planted-broker-pass-77aa"
BEARER = "planted-bearer-token-c3f0"
API_KEY = "bo_planted_api_key_e4d9"
COOKIE = "planted-cookie-value-18be"
SIGNATURE = "v1,cGxhbnRlZC1zaWduYXR1cmU="
BODY_MARKER = "planted-request-body-4242"
PLANTED = [
    TEST_SECRET_KEY,
    LLM_KEY,
    WEBHOOK_SECRET,
    ENV_TOKEN,
    BROKER_PASSWORD,
    BEARER,
    API_KEY,
    COOKIE,
    SIGNATURE,
    BODY_MARKER,
]


@dataclass
class Ingest:
    """What the stand-in for Sentry received: each request's path and decoded body."""

    port: int
    received: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.port}/1"


def _decoded(body: bytes, encoding: str) -> bytes:
    """The envelope as sent before compression (the SDK compresses with gzip or Brotli)."""
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli  # only there when the SDK chose it

        decompressed: bytes = brotli.decompress(body)
        return decompressed
    assert encoding in ("", "identity"), encoding
    return body


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    """A local HTTP server that takes envelopes as Sentry's ingest does (200, empty)."""
    server_port = free_port()
    recorder = Ingest(server_port)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            encoding = self.headers.get("Content-Encoding", "")
            recorder.received.append((self.path, _decoded(body, encoding)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", server_port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()


def app_environment(tmp_path, **settings: str) -> dict[str, str]:
    return process_environment(
        APP_ENV="testing",
        SECRET_KEY=TEST_SECRET_KEY,
        DATABASE_URL=f"sqlite:///{tmp_path / 'reporting.db'}",
        INSTANCE_PATH=str(tmp_path),
        LLM_API_KEY=LLM_KEY,
        WEBHOOK_SECRETS=json.dumps({"payments": WEBHOOK_SECRET}),
        CELERY_BROKER_URL=f"redis://:{BROKER_PASSWORD}@127.0.0.1:1/0",
        PAYMENTS_API_TOKEN=ENV_TOKEN,
        LOG_LEVEL="WARNING",
        **settings,
    )


@pytest.fixture
def reporting_server(tmp_path, ingest) -> Iterator[int]:
    """The app, reporting to `ingest`, behind a real HTTP server; its port."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.error_reporting_app"],
        cwd=ROOT,
        env=app_environment(
            tmp_path, SENTRY_DSN=ingest.dsn, SENTRY_ENVIRONMENT="ci", PORT=str(port)
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        eventually(lambda: process.poll() is not None or healthy(port), timeout=60)
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_an_unexpected_error_reaches_the_ingest_without_secrets_or_body(reporting_server, ingest):
    connection = http.client.HTTPConnection("127.0.0.1", reporting_server, timeout=10)
    connection.request(
        "POST",
        f"/boom?q=coffee&api_key={API_KEY}",
        body=json.dumps({"card": BODY_MARKER}),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {BEARER}",
            "X-Api-Key": API_KEY,
            "Cookie": f"session={COOKIE}",
            "webhook-signature": SIGNATURE,
            "X-Request-ID": "report-me-1",
        },
    )
    response = connection.getresponse()
    answer = response.read().decode()
    connection.close()

    assert response.status == 500
    assert response.getheader("Content-Type") == PROBLEM
    problem = json.loads(answer)
    assert problem["status"] == 500
    assert problem["request_id"] == "report-me-1"
    assert "Traceback" not in answer
    assert "payment partner" not in answer

    eventually(lambda: any(b'"type":"event"' in body for _, body in ingest.received), timeout=30)
    [(path, envelope)] = [item for item in ingest.received if b'"type":"event"' in item[1]]
    assert path == "/api/1/envelope/"
    event = json.loads(envelope.splitlines()[2])
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"].startswith("the payment partner said no: secret_key=[Filtered]")
    assert "broker=redis://:[Filtered]@127.0.0.1:1/0" in exception["value"]
    assert event["environment"] == "ci"
    assert event["release"] == "backoffice@0.1.0"
    assert event["request"]["method"] == "POST"
    assert event["request"]["url"].endswith("/boom")
    assert event["request"]["headers"]["X-Request-Id"] == "report-me-1"
    assert "data" not in event["request"]
    for raw in (body for _, body in ingest.received):
        for planted in PLANTED:
            assert planted.encode() not in raw, planted


def test_without_a_dsn_the_sdk_is_not_even_loaded(tmp_path):
    script = (
        "import sys\n"
        "from backoffice import create_app\n"
        "app = create_app()\n"
        "assert 'error_reporting' not in app.extensions\n"
        "print('sentry_sdk' in sys.modules)\n"
    )
    result = subprocess.run(  # noqa: S603 (our own app)
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=app_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_dsn_that_is_not_one_is_refused_without_repeating_it(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "from backoffice import create_app; create_app()"],
        cwd=ROOT,
        env=app_environment(tmp_path, SENTRY_DSN="not-a-dsn-planted"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SENTRY_DSN must read like https://<key>@<host>/<project>" in result.stderr
    assert "not-a-dsn-planted" not in result.stderr
