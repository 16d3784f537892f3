"""`GET /metrics`: Prometheus text, counted over every process that writes to the
multiprocess directory (this test process, the Celery workers and servers it starts).

Counters are process-wide, not per app, so tests compare a scrape before and after their
traffic. Scrapes go to `metrics_app`, an app with METRICS_TOKEN on a database of its own
(so what its scrape-time readers find is only what a test put there); traffic goes to
any app, the session's included.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import flask_migrate
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from backoffice import create_app, housekeeping, metrics
from backoffice.database import utcnow
from backoffice.extensions import db
from backoffice.jobs import service as jobs_service
from backoffice.jobs.models import Job
from backoffice.users import service as users
from backoffice.users.models import Role
from bench.fake_llm import serving
from tests.support import (
    PASSWORD,
    TEST_SECRET_KEY,
    assert_problem,
    eventually,
    settings,
    start_job,
    wait_for_job,
)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "metrics-token-0123456789abcdef0123456789abcdef"
ITEM_ROUTE = "/api/items/<uuid:item_id>"

#: (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, parsed with prometheus_client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for one never written (a labelled series appears on first use)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def metrics_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[APIFlask]:
    folder = tmp_path_factory.mktemp("metrics-app")
    app = create_app(
        settings(
            DATABASE_URL=f"sqlite:///{folder / 'metrics.db'}",
            CELERY_BROKER_URL=f"sqla+sqlite:///{folder / 'broker.db'}",  # no worker listens
            METRICS_TOKEN=TOKEN,
        )
    )
    with app.app_context():
        flask_migrate.upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def scrape(metrics_app: APIFlask) -> Callable[[], Samples]:
    def read() -> Samples:
        response = metrics_app.test_client().get(
            "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return parse(response.get_data(as_text=True))

    return read


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    return value(
        samples, "backoffice_http_requests_total", method=method, route=route, status=str(status)
    )


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a sample went up between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def requests_grew(before: Samples, after: Samples, method: str, route: str, status: int) -> float:
    labels = {"method": method, "route": route, "status": str(status)}
    return grew(before, after, "backoffice_http_requests_total", **labels)


def test_requests_are_counted_by_route_template_and_status(
    client: FlaskClient, scrape: Callable[[], Samples]
) -> None:
    before = scrape()
    ids = [client.post("/api/items", json={"name": f"widget {n}"}).json["id"] for n in range(2)]
    for item_id in ids * 3:
        assert client.get(f"/api/items/{item_id}").status_code == 200
    assert client.get(f"/api/items/{uuid.uuid4()}").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    after = scrape()

    assert requests_grew(before, after, "GET", ITEM_ROUTE, 200) == 6
    assert requests_grew(before, after, "GET", ITEM_ROUTE, 404) == 1
    assert requests_grew(before, after, "POST", "/api/items", 201) == 2
    assert requests_grew(before, after, "GET", "unmatched", 404) == 1
    # The latency histogram has the same labels; its count moved as much.
    read = {"method": "GET", "route": ITEM_ROUTE, "status": "200"}
    count = "backoffice_http_request_duration_seconds_count"
    assert grew(before, after, count, **read) == 6
    bucket = "backoffice_http_request_duration_seconds_bucket"
    assert value(after, bucket, **read, le="+Inf") == value(after, count, **read)
    # Raw paths never become labels.
    routes = {dict(pairs)["route"] for _, pairs in after if "route" in dict(pairs)}
    assert not any(item_id in route for item_id in ids for route in routes)
    assert "/no/such/path" not in routes


def _merged(name: str, files: list[Path]) -> float:
    for family in MultiProcessCollector.merge([str(file) for file in files], accumulate=True):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


def this_process(name: str) -> float:
    """`name`'s value in this process's own files (a Celery worker may hold connections
    of its own at any moment; what this process holds is exact)."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    return _merged(name, list(directory.glob(f"*_{os.getpid()}.db")))


def other_processes(name: str) -> float:
    """`name`'s value over every other process writing where this one does."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    ours = f"_{os.getpid()}.db"
    files = [*directory.glob("*.db"), *directory.glob("*/*.db")]
    return _merged(name, [file for file in files if not file.name.endswith(ours)])


def test_the_scrape_itself_is_the_request_in_flight(scrape: Callable[[], Samples]) -> None:
    # Processes of other tests that were killed mid-request (the crash tests) left theirs:
    # a crashed process's live gauges stay until the server restarts (docs/operations/metrics.md).
    gauge = "backoffice_http_requests_in_flight"
    assert value(scrape(), gauge) - other_processes(gauge) == 1


def test_checked_out_connections_are_counted(
    metrics_app: APIFlask, scrape: Callable[[], Samples]
) -> None:
    gauge = "backoffice_db_pool_checked_out"
    base = this_process(gauge)
    with metrics_app.app_context():
        first, second = db.engine.connect(), db.engine.connect()
        assert this_process(gauge) == base + 2
        assert value(scrape(), gauge) >= base + 2  # every process's, added up
        first.close()
        second.close()
    assert this_process(gauge) == base
    for _ in range(3):  # scrapes, and the reader's query, give back what they take
        scrape()
    assert this_process(gauge) == base


def test_failed_logins_and_their_429_are_counted(
    make_app: Callable[..., APIFlask],
    database_url: str,
    app: APIFlask,
    scrape: Callable[[], Samples],
) -> None:
    limited = make_app(DATABASE_URL=database_url, LOGIN_RATE_LIMIT="3 per day")
    limited.config["RATELIMIT_KEY_PREFIX"] = uuid.uuid4().hex  # counts of this test's own
    with app.app_context():
        users.create_user("Ada", "ada-metrics@example.com", PASSWORD, Role.MEMBER)
    client = limited.test_client()
    before = scrape()
    wrong = {"email": "ada-metrics@example.com", "password": "not the password"}
    for _ in range(3):
        assert client.post("/api/auth/token", json=wrong).status_code == 401
    assert_problem(client.post("/api/auth/token", json=wrong), 429)
    after = scrape()

    assert grew(before, after, "backoffice_login_failures_total") == 3
    assert grew(before, after, "backoffice_rate_limited_total", limit="password") == 1
    route = "/api/auth/token"
    assert requests_grew(before, after, "POST", route, 401) == 3
    assert requests_grew(before, after, "POST", route, 429) == 1


def test_chat_calls_count_their_latency_and_tokens(
    make_app: Callable[..., APIFlask],
    database_url: str,
    client: FlaskClient,
    scrape: Callable[[], Samples],
) -> None:
    with serving() as model_server:
        chat_app = make_app(
            DATABASE_URL=database_url, LLM_BASE_URL=model_server.url, LLM_MODEL="fake-model"
        )
        chat = chat_app.test_client()
        chat.environ_base.update(client.environ_base)  # the member's token
        before = scrape()
        answer = chat.post("/api/chat", json={"message": "count the red widgets"})
        chat_app.extensions["chat_gateway"].close()
    assert answer.status_code == 200, answer.json
    after = scrape()

    calls = "backoffice_llm_call_duration_seconds_count"
    assert grew(before, after, calls, outcome="completed", stream="false") == 1
    tokens = "backoffice_llm_tokens_total"
    spent = sum(grew(before, after, tokens, kind=kind) for kind in ("prompt", "completion"))
    assert spent == answer.json["tokens_used"] > 0


def test_work_queues_are_read_from_the_database_at_scrape_time(
    metrics_app: APIFlask, scrape: Callable[[], Samples]
) -> None:
    with metrics_app.app_context():
        user = users.create_user("Bo", f"bo-{uuid.uuid4().hex}@example.com", PASSWORD, Role.MEMBER)
        jobs = [
            jobs_service.create_job(user.id, "text-analysis", {"text": "one two"}) for _ in range(3)
        ]
        waited = utcnow() - timedelta(seconds=600)
        db.session.execute(update(Job).where(Job.id == jobs[0].id).values(enqueued_at=waited))
        db.session.commit()
    samples = scrape()

    rows = "backoffice_work_queue_rows"
    assert value(samples, rows, queue="jobs", status="queued") == 3
    assert value(samples, rows, queue="jobs", status="running") == 0
    assert value(samples, rows, queue="webhooks", status="received") == 0
    age = value(samples, "backoffice_work_queue_oldest_waiting_seconds", queue="jobs")
    assert 600 <= age < 660
    assert value(samples, "backoffice_work_queue_oldest_waiting_seconds", queue="webhooks") == 0
    assert value(samples, "backoffice_metrics_reader_up", reader="work_queues") == 1


def test_retention_shows_what_is_overdue_and_counts_what_it_deletes(
    metrics_app: APIFlask, scrape: Callable[[], Samples]
) -> None:
    with metrics_app.app_context():
        user = users.create_user(
            "Old", f"old-{uuid.uuid4().hex}@example.com", PASSWORD, Role.MEMBER
        )
        job = jobs_service.create_job(user.id, "text-analysis", {"text": "long ago"})
        finished = utcnow() - timedelta(days=metrics_app.config["JOB_RETENTION_DAYS"], hours=2)
        db.session.execute(
            update(Job).where(Job.id == job.id).values(status="succeeded", finished_at=finished)
        )
        db.session.commit()
    before = scrape()
    overdue = value(before, "backoffice_retention_overdue_seconds", table="jobs")
    assert 2 * 3600 <= overdue < 2 * 3600 + 60  # due two hours ago: nothing pruned it
    assert value(before, "backoffice_metrics_reader_up", reader="retention") == 1

    with metrics_app.app_context():
        deleted = housekeeping.prune()
    assert deleted is not None
    assert deleted["jobs"] >= 1
    after = scrape()
    assert (
        grew(before, after, "backoffice_retention_deleted_rows_total", table="jobs")
        == (deleted["jobs"])
    )
    assert ("backoffice_retention_overdue_seconds", (("table", "jobs"),)) not in after


def test_a_job_run_by_a_celery_worker_is_counted_here(
    client: FlaskClient, worker: subprocess.Popen[bytes], scrape: Callable[[], Samples]
) -> None:
    runs = "backoffice_work_runs_total"
    before = value(scrape(), runs, queue="jobs", outcome="succeeded")
    url, _ = start_job(client, {"type": "text-analysis", "input": {"text": "The cat sat."}})
    assert wait_for_job(client, url)["status"] == "succeeded"
    # The worker process wrote it; this process's scrape adds it in.
    after = eventually(
        lambda: value(scrape(), runs, queue="jobs", outcome="succeeded"),
        lambda seen: seen > before,
        timeout=10,
    )
    assert after - before == 1


def test_readers_added_later_are_scraped_and_a_failing_one_is_reported(
    metrics_app: APIFlask, scrape: Callable[[], Samples]
) -> None:
    def overdue(now: datetime) -> Mapping[str, float | None]:
        return {"idempotency_keys": 42.5, "webhook_events": None}

    def retention(now: datetime) -> Iterator[Metric]:
        yield metrics.gauge("backoffice_test_overdue_seconds", "Test.", "table", overdue(now))

    def broken(now: datetime) -> Iterator[GaugeMetricFamily]:
        raise RuntimeError("the reader's bug")

    metrics.add_reader(metrics_app, "retention", retention)
    metrics.add_reader(metrics_app, "broken", broken)
    try:
        samples = scrape()
    finally:
        del metrics_app.extensions["metrics"].readers["retention"]
        del metrics_app.extensions["metrics"].readers["broken"]
    overdue_name = "backoffice_test_overdue_seconds"
    assert value(samples, overdue_name, table="idempotency_keys") == 42.5
    assert (overdue_name, (("table", "webhook_events"),)) not in samples
    assert value(samples, "backoffice_metrics_reader_up", reader="retention") == 1
    assert value(samples, "backoffice_metrics_reader_up", reader="broken") == 0
    assert value(samples, "backoffice_metrics_reader_up", reader="work_queues") == 1


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
)
def test_metrics_without_the_token_are_401_and_never_shown(
    metrics_app: APIFlask, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = metrics_app.test_client().get("/metrics", headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "backoffice_" not in response.get_data(as_text=True)
    assert body["type"] == "/problems/unauthorized"


def test_metrics_are_off_without_a_token(anonymous: FlaskClient) -> None:
    response = anonymous.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert_problem(response, 404)
    assert "backoffice_" not in response.get_data(as_text=True)


def test_metrics_stay_out_of_the_openapi_document(metrics_app: APIFlask) -> None:
    assert "/metrics" not in metrics_app.test_client().get("/openapi.json").json["paths"]


#: Another process: an app of its own answering `count` liveness probes, then exiting.
CHILD = """
import os, sys
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
from backoffice import create_app
from backoffice.config import TestingConfig
app = create_app(TestingConfig.from_env({"DATABASE_URL": sys.argv[1]}))
client = app.test_client()
for _ in range(int(sys.argv[2])):
    assert client.get("/health").status_code == 200
"""


def test_counts_of_other_processes_are_added_in(
    tmp_path: Path, scrape: Callable[[], Samples], anonymous: FlaskClient
) -> None:
    before = requests(scrape(), "GET", "/health", 200)
    database = f"sqlite:///{tmp_path / 'child.db'}"
    ours = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    # One process writing beside this one, as a server's other worker or a Celery worker
    # of this machine; one in a subdirectory, as a worker container sharing the volume.
    for count, directory in ((7, ours), (5, str(Path(ours) / "worker"))):
        subprocess.run(  # noqa: S603 (our own code)
            [sys.executable, "-c", CHILD, database, str(count)],
            cwd=ROOT,
            env={
                **os.environ,
                "INSTANCE_PATH": str(tmp_path),
                "PROMETHEUS_MULTIPROC_DIR": directory,
            },
            check=True,
            timeout=120,
        )
    assert anonymous.get("/health").status_code == 200  # and one here
    after = requests(scrape(), "GET", "/health", 200)
    assert after - before == 7 + 5 + 1


def test_a_dead_process_leaves_its_counters_but_not_its_live_gauges(tmp_path: Path) -> None:
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    pid = 2**22 + 12345  # above any pid this machine hands out
    for kind in ("counter", "gauge_livesum"):
        (directory / f"{kind}_{pid}.db").write_bytes(b"")
    metrics.process_ended(pid)
    assert (directory / f"counter_{pid}.db").exists()
    assert not (directory / f"gauge_livesum_{pid}.db").exists()
    (directory / f"counter_{pid}.db").unlink()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _answers(port: int) -> bool:
    try:
        return _get(port, "/")[0] == 200
    except OSError:
        return False


def test_granian_counts_every_worker_and_starts_from_an_empty_directory(tmp_path: Path) -> None:
    """`deploy/serve` with two Granian workers: the counts an earlier run left in the
    directory are gone, and a scrape, whichever worker answers it, adds up both."""
    directory = tmp_path / "prometheus"
    database = f"sqlite:///{tmp_path / 'serve.db'}"
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "APP_ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database,
        "INSTANCE_PATH": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "METRICS_TOKEN": TOKEN,
        "HOST": "127.0.0.1",
        "GRANIAN_WORKERS": "2",
    }
    directory.mkdir()
    # An earlier run: 9 liveness probes counted in this directory.
    subprocess.run(  # noqa: S603 (our own code)
        [sys.executable, "-c", CHILD, database, "9"], cwd=ROOT, env=env, check=True, timeout=120
    )
    assert list(directory.glob("*.db"))
    port = _free_port()
    log = tmp_path / "granian.log"
    with log.open("wb") as output:
        server = subprocess.Popen(  # noqa: S603 (our own script)
            [str(ROOT / "deploy" / "serve")],
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        eventually(lambda: server.poll() is not None or _answers(port), timeout=60)
        assert server.poll() is None, log.read_text()
        for _ in range(20):  # a connection each: both workers may take some
            assert _get(port, "/health")[0] == 200
        status, body = _get(port, "/metrics")
        assert status == 401
        assert "backoffice_" not in body
        status, body = _get(port, "/metrics", TOKEN)
        assert status == 200
        samples = parse(body)
        assert requests(samples, "GET", "/health", 200) == 20  # the earlier run's 9 are gone
        assert value(samples, "backoffice_http_requests_in_flight") == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
