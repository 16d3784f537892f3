"""`uv run python -m bench.models`: the sentiment and language jobs through a real server and
one real worker process, batches of 1,000 texts.

1. A fresh PostgreSQL database (`BENCH_MODELS_DATABASE_URL`, default
   `postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench_models`, dropped and
   recreated), migrated, with a member; a Redis broker database of the bench's own
   (`BENCH_MODELS_BROKER_URL`, default `redis://127.0.0.1:6379/14`, emptied).
2. The app under the production server (`deploy/serve`, Granian) and one Celery worker
   process, `--pool solo`: one process running one job at a time, so its figures are per
   worker process (the Procfile's `--pool threads --concurrency 4` shares one process, and
   one GIL, between four threads).
3. Per job type: one 1-text job (the worker loads the model), then `--rounds` batches of
   1,000 texts (short reviews in English, French, German and Spanish, 20 to 90
   characters), one at a time. For each: the time from the 202 to the first poll that
   sees it succeeded (polled every POLL_S), and its run in the worker (`finished_at -
   started_at`: claim, model, progress writes, result). Texts per second is 1,000 over
   the run; the model's own time per text comes from the worker's histogram in `/metrics`.
   The worker's resident memory (VmRSS in `/proc/<pid>/status`) is read before any job and
   after each model is loaded.
4. Printed, and written to `bench/results/models-<time>.json`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from prometheus_client.parser import text_string_to_metric_families

from backoffice import create_app
from backoffice.auth import service as auth
from backoffice.config import load_settings
from backoffice.users import service as users
from bench import ROOT
from bench.__main__ import app_environment, run_and_report
from bench.database import flask, recreate
from bench.report import machine
from bench.servers import BACKOFFICE, running

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench_models"
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"
BATCH = 1000
POLL_S = 0.02
TYPES = ("sentiment", "language")
LOGS = Path(tempfile.gettempdir()) / "backoffice-bench"
METRICS_TOKEN = secrets.token_urlsafe(32)
#: What the batches are made of, in turn: reviews as a shop's customers write them.
CORPUS = (
    "Great product, works exactly as described. Would buy again!",
    "Terrible quality, it broke after two days.",
    "The delivery was on time and the box was fine.",
    "Not bad for the price, but the battery life could be better.",
    "Absolutely love it :) my kids use it every day",
    "Worst customer service I have ever dealt with.",
    "Très bon produit, livraison rapide, je recommande.",
    "Le colis est arrivé abîmé et personne ne répond.",
    "Sehr gutes Preis-Leistungs-Verhältnis, schnelle Lieferung.",
    "Die Qualität ist leider nicht so gut wie erwartet.",
    "Muy buena calidad, llegó antes de lo previsto.",
    "No funciona bien, estoy muy decepcionado.",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="1,000-text batches per type")
    return parser.parse_args(argv)


def corpus(size: int = BATCH) -> list[str]:
    return [CORPUS[n % len(CORPUS)] for n in range(size)]


def rss_kib(status: str) -> int:
    """VmRSS of a `/proc/<pid>/status` text, in KiB."""
    found = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    if found is None:
        raise ValueError("no VmRSS line")
    return int(found.group(1))


def inference_totals(exposition: str) -> dict[str, dict[str, float]]:
    """Per job type, the histogram's count and sum (seconds) of the model's time per text."""
    totals: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != "backoffice_inference_seconds":
            continue
        for sample in family.samples:
            kind = sample.name.removeprefix("backoffice_inference_seconds_")
            if kind in {"count", "sum"}:
                totals.setdefault(sample.labels["type"], {})[kind] = sample.value
    return totals


def per_text_ms(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    texts = after.get("count", 0.0) - before.get("count", 0.0)
    seconds = after.get("sum", 0.0) - before.get("sum", 0.0)
    return 1000 * seconds / texts if texts else 0.0


def run_seconds(job: Mapping[str, Any]) -> float:
    started = datetime.fromisoformat(job["started_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return (finished - started).total_seconds()


def summarize(runs: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """The rounds of one type: texts/s over the worker's run, and 202-to-result, medians."""
    rates = [BATCH / run["run_s"] for run in runs]
    waits = [run["accepted_to_result_s"] for run in runs]
    return {
        "texts_per_s": statistics.median(rates),
        "texts_per_s_rounds": rates,
        "accepted_to_result_s": statistics.median(waits),
        "accepted_to_result_s_rounds": waits,
    }


# --- the processes ------------------------------------------------------------------------


def environment(url: str, broker: str, metrics_dir: str) -> dict[str, str]:
    return {
        **app_environment(url),
        "CELERY_BROKER_URL": broker,
        "INSTANCE_PATH": str(LOGS / "models-instance"),
        "LOG_LEVEL": "WARNING",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
    }


def member_token(env: Mapping[str, str]) -> str:
    app = create_app(load_settings(env))
    with app.app_context():
        member = users.create_user("Bench", "models@example.com", secrets.token_urlsafe(16))
        token: str = auth.issue_tokens(member)["access_token"]
    return token


@contextmanager
def worker(env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One Celery worker process (`--pool solo`), once it takes messages; stopped after."""
    command = [sys.executable, "-m", "celery", "-A", "backoffice.worker", "worker"]
    options = ["--pool", "solo", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 (our own worker)
            [*command, *options], cwd=ROOT, env=dict(env), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Api:
    """The member's calls, on one kept-alive connection."""

    def __init__(self, base: str, token: str) -> None:
        address = urlsplit(base)
        self.connection = http.client.HTTPConnection(str(address.hostname), address.port, 30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body)
        self.connection.request(method, path, body=payload, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    def metrics(self) -> str:
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        self.connection.request("GET", "/metrics", headers=headers)
        response = self.connection.getresponse()
        return response.read().decode()

    def run_job(self, job_type: str, texts: list[str]) -> tuple[float, dict[str, Any]]:
        """Start the job, poll until it has finished: seconds from the 202, and the job."""
        status, accepted = self.call(
            "POST", "/api/jobs", {"type": job_type, "input": {"texts": texts}}
        )
        if status != 202:
            raise RuntimeError(f"POST /api/jobs answered {status}: {accepted}")
        since = time.perf_counter()
        while True:
            _, job = self.call("GET", f"/api/jobs/{accepted['id']}")
            if job["status"] in {"succeeded", "failed", "cancelled"}:
                waited = time.perf_counter() - since
                if job["status"] != "succeeded":
                    raise RuntimeError(f"the {job_type} job ended {job['status']}: {job['error']}")
                return waited, job
            time.sleep(POLL_S)


def resident_kib(pid: int) -> int:
    return rss_kib(Path(f"/proc/{pid}/status").read_text())


def measure(api: Api, job_type: str, rounds: int, rss: Callable[[], int]) -> dict[str, Any]:
    """Load the model with a 1-text job, then the rounds of 1,000-text batches."""
    api.run_job(job_type, ["warm-up"])
    loaded = rss()
    before = inference_totals(api.metrics()).get(job_type, {})
    runs = []
    for number in range(1, rounds + 1):
        waited, job = api.run_job(job_type, corpus())
        runs.append({"accepted_to_result_s": waited, "run_s": run_seconds(job)})
        print(
            f"  {job_type} round {number}: {BATCH / runs[-1]['run_s']:8.0f} texts/s in the "
            f"worker, 202 to result {waited * 1000:7.0f} ms",
            flush=True,
        )
    after = inference_totals(api.metrics()).get(job_type, {})
    model = job["result"]
    return {
        "model": model["model"],
        "model_version": model["model_version"],
        "rss_after_load_kib": loaded,
        "model_ms_per_text": per_text_ms(before, after),
        **summarize(runs),
        "rounds": runs,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    url = os.environ.get("BENCH_MODELS_DATABASE_URL", DEFAULT_URL)
    broker = os.environ.get("BENCH_MODELS_BROKER_URL", DEFAULT_BROKER)
    LOGS.mkdir(exist_ok=True)
    env = environment(url, broker, tempfile.mkdtemp(prefix="backoffice-bench-metrics-"))
    print("Preparing the database and the broker", flush=True)
    recreate(url)
    flask(env, "db", "upgrade", timeout=60)
    with redis.Redis.from_url(broker) as queue:
        queue.flushdb()
    token = member_token(env)
    results: dict[str, Any] = {}
    with (
        running("granian", BACKOFFICE, env, LOGS / "models-server.log") as base,
        worker(env, LOGS / "models-worker.log") as process,
    ):
        baseline = resident_kib(process.pid)
        api = Api(base, token)
        for job_type in TYPES:
            results[job_type] = measure(
                api, job_type, args.rounds, lambda: resident_kib(process.pid)
            )
    print(f"\nworker RSS before any model: {baseline / 1024:.0f} MiB")
    for job_type, found in results.items():
        print(
            f"{job_type:<10} {found['model']} {found['model_version']}: "
            f"{found['texts_per_s']:.0f} texts/s per worker process, "
            f"{found['model_ms_per_text']:.3f} ms of model per text, "
            f"202 to result {found['accepted_to_result_s'] * 1000:.0f} ms (median), "
            f"RSS after loading {found['rss_after_load_kib'] / 1024:.0f} MiB"
        )
    return {
        "machine": machine(),
        "batch": BATCH,
        "mean_text_chars": statistics.mean(len(text) for text in CORPUS),
        "poll_s": POLL_S,
        "worker": {"pool": "solo", "rss_before_models_kib": baseline},
        "types": results,
        "logs": str(LOGS),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(lambda: run(args), kind="models")


if __name__ == "__main__":
    sys.exit(main())
