"""`uv run python -m bench [--server granian|gunicorn] [--duration N]` from the repository root."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy.engine import make_url

from bench import database
from bench.apps import FLASK, RAW, App, backoffice
from bench.load import measure, wrk_params
from bench.report import Measurement, checks, machine, print_table, rows, write
from bench.servers import SERVERS, running, settings

LOGS = Path(tempfile.gettempdir()) / "backoffice-bench"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--server", choices=SERVERS, default="granian")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per endpoint")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per endpoint")
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
        "LOG_LEVEL": "INFO",
    }


def measure_app(
    args: argparse.Namespace, app: App, env: Mapping[str, str], log: Path
) -> list[Measurement]:
    print(f"{app.name}: {app.target} under {args.server} (server log: {log})", flush=True)
    with running(args.server, app.target, env, log) as base_url:
        measured = []
        for endpoint in app.endpoints:
            print(f"  {endpoint.label}", flush=True)
            result = measure(base_url, endpoint, args.duration, args.warmup)
            measured.append(Measurement(app.name, endpoint, result))
    return measured


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    url = os.environ.get("BENCH_DATABASE_URL", database.DEFAULT_URL)
    env = app_environment(url)
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"Preparing {shown}: migrations, {database.SEED_ITEMS:,} items", flush=True)
    database.prepare(url, env)
    fixtures = database.fixtures(env)
    LOGS.mkdir(exist_ok=True)
    measured: list[Measurement] = []
    for app in (backoffice(fixtures), RAW, FLASK):
        measured += measure_app(args, app, env, LOGS / f"{args.server}-{app.name}.log")
    table, found = rows(measured), checks(measured)
    print_table(table, found)
    return {
        "server": settings(args.server),
        "wrk": wrk_params(args.duration, args.warmup),
        "machine": machine(),
        "database": {"url": shown, "items": database.SEED_ITEMS, **fixtures.postgres},
        "results": table,
        "checks": found,
        "server_logs": str(LOGS),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C, so every server is stopped


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        results = run(parse_args(argv))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    path = write(results)
    print(f"\nResults: {path} (and {path.with_name('latest.json')}); {results['elapsed_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
