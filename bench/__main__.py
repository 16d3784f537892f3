"""`uv run python -m bench [--server granian|gunicorn]` from the repository root.

All three apps are served at once (idle servers cost no CPU) and measured in interleaved
rounds, so a machine that speeds up or slows down during the run shifts every app alike.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from sqlalchemy.engine import make_url

from bench import database, orders, webhooks
from bench.apps import FLASK, RAW, TOY, App, backoffice
from bench.load import Result, warm_up, wrk, wrk_params
from bench.report import Measurement, checks, machine, print_table, rows, write
from bench.servers import SERVERS, running, settings

LOGS = Path(tempfile.gettempdir()) / "backoffice-bench"
#: A Redis database of the bench's own: emptied at the start of every run.
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")


def load_options(parser: argparse.ArgumentParser, rounds: str, duration: str) -> None:
    """The options every wrk-driven bench takes (`rounds` and `duration`: their help)."""
    parser.add_argument("--server", choices=SERVERS, default="granian")
    parser.add_argument("--rounds", type=int, default=2, help=rounds)
    parser.add_argument("--duration", type=int, default=5, help=duration)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per endpoint")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    load_options(parser, rounds="measurements per endpoint", duration="seconds of load per round")
    return parser.parse_args(argv)


def app_environment(url: str) -> dict[str, str]:
    """The production profile against the bench database, `flask`/`granian` on the PATH."""
    scripts = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]),
        "FLASK_APP": "backoffice",
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": url,
        "TRUSTED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "INFO",
        "WEBHOOK_SECRETS": json.dumps({webhooks.SOURCE: webhooks.SECRET}),
        # Events are handed to a real broker after commit, as in production.
        "CELERY_BROKER_URL": BROKER_URL,
    }


def serve_all(
    stack: ExitStack, server: str, apps: Sequence[App], env: Mapping[str, str]
) -> dict[str, str]:
    """Start every app (stopped when `stack` closes); their base URLs by name."""
    LOGS.mkdir(exist_ok=True)
    urls = {}
    for app in apps:
        served_by = app.server or server
        log = LOGS / f"{served_by}-{app.name}.log"
        print(f"Starting {app.target} under {served_by} (log: {log})", flush=True)
        urls[app.name] = stack.enter_context(running(served_by, app.target, env, log))
    return urls


def measure_all(
    args: argparse.Namespace, apps: Sequence[App], urls: Mapping[str, str]
) -> list[Measurement]:
    """Warm up every endpoint, then measure them all, round after round."""
    plan = [(app.name, endpoint) for app in apps for endpoint in app.endpoints]
    rounds: list[list[Result]] = [[] for _ in plan]
    for number in range(1, args.rounds + 1):
        for i, (name, endpoint) in enumerate(plan):
            if number == 1:
                warm_up(urls[name], endpoint, args.warmup)
            result = wrk(urls[name], endpoint, args.duration)
            rounds[i].append(result)
            label = f"{name}: {endpoint.label}"
            print(f"  round {number}: {label:<52} {result.rps:>9.1f} req/s", flush=True)
    return [Measurement(name, endpoint, rounds[i]) for i, (name, endpoint) in enumerate(plan)]


def database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", database.DEFAULT_URL)


def prepare(url: str, env: Mapping[str, str]) -> tuple[str, database.Fixtures]:
    """The bench database migrated and seeded, the broker emptied; the database's URL
    as it may be shown (no password), and the fixtures the load needs."""
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"Preparing {shown}: migrations, {database.SEED_ITEMS:,} items", flush=True)
    database.prepare(url, env)
    with redis.Redis.from_url(BROKER_URL) as broker:
        broker.flushdb()  # the previous run's messages, never consumed (no worker runs here)
    return shown, database.fixtures(env)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    url = database_url()
    env = app_environment(url)
    shown, fixtures = prepare(url, env)
    LOGS.mkdir(exist_ok=True)
    webhooks.prepare(LOGS)
    catalogue = orders.prepare(env, LOGS)
    apps = (backoffice(fixtures), RAW, FLASK, TOY)
    with ExitStack() as stack:
        measured = measure_all(args, apps, serve_all(stack, args.server, apps, env))
    oversold = orders.oversold(env, catalogue)
    table, found = rows(measured), checks(measured, oversold)
    print_table(table, found)
    return {
        "server": settings(args.server),
        "wrk": wrk_params(args.duration, args.warmup, args.rounds),
        "machine": machine(),
        "database": {"url": shown, "items": database.SEED_ITEMS, **fixtures.postgres},
        "results": table,
        "checks": found,
        "server_logs": str(LOGS),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C, so every server is stopped


def stopping_servers(work: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """`work()`, a SIGTERM unwinding it like Ctrl-C so that every server it started is
    stopped; None if it was interrupted."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return work()
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return None


def run_and_report(work: Callable[[], dict[str, Any]], kind: str) -> int:
    """A bench module's whole `main`: `work()` with its servers stopped on SIGTERM or
    Ctrl-C (exit 130), then its results written as `bench/results/<kind>-<stamp>.json`."""
    results = stopping_servers(work)
    if results is None:
        return 130
    path = write(results, kind=kind)
    print(f"\nResults: {path}; {results['elapsed_s']}s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = stopping_servers(lambda: run(args))
    if results is None:
        return 130
    path = write(results)
    print(f"\nResults: {path} (and {path.with_name('latest.json')}); {results['elapsed_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
