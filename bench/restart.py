"""`uv run python -m bench.restart`: how long a restarted replica takes to answer again.

1. A fresh PostgreSQL database (`BENCH_RESTART_DATABASE_URL`, default
   `postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench_restart`, dropped and
   recreated), migrated, with a member, their access token and one item; a Redis broker
   database of the bench's own (`BENCH_RESTART_BROKER_URL`, default
   `redis://127.0.0.1:6379/13`), as production hands work to one.
2. `--rounds` restarts idle, then as many under load: `deploy/serve` (Granian with
   deploy/granian.env, the production profile) started cold on a free port, and from the
   moment it is started, the time to the first 200 of `GET /health` (liveness), of
   `GET /api/health` (readiness: every dependency asked) and of the member's
   `GET /api/items/<id>`, probed one after the other (a probe waits for its answer: Granian
   listens before its workers are up). Under load, a second instance of the app answers
   the same item read to wrk (-c`LOAD_CONNECTIONS`) on the same machine while the replica
   restarts, as a replica restarts beside its loaded siblings.
3. What a restart costs whatever the load: the CPU seconds the replica's processes (the
   configuration check, Granian, its workers) had used when the item read first answered,
   read from /proc; and the parts, each run alone: the configuration check
   `deploy/serve` makes (`python -m backoffice.startup`) and a worker's import of the
   entry point (`import backoffice.rsgi`, which builds the app), with the modules that
   import loads.
4. Printed, and written to `bench/results/restart-<time>.json`.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from backoffice import create_app
from backoffice.auth import service as auth
from backoffice.config import load_settings
from backoffice.items import service as items
from backoffice.users import service as users
from bench import ROOT
from bench.__main__ import app_environment, run_and_report
from bench.database import flask, recreate
from bench.load import parse
from bench.report import machine
from bench.servers import BACKOFFICE, HOST, SERVE, free_port, launch, listening_on, running, stop

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench_restart"
DEFAULT_BROKER = "redis://127.0.0.1:6379/13"
LOGS = Path(tempfile.gettempdir()) / "backoffice-bench"
#: wrk's connections on the loaded sibling, and how long it runs before a restart starts.
LOAD_CONNECTIONS = 20
LOAD_LEAD_S = 2.0
#: Between two probes that found nothing listening yet.
POLL_S = 0.01
START_TIMEOUT = 120.0
#: The three answers timed, in the order they are probed.
PROBES = ("health", "readiness", "item")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="restarts idle, and as many loaded")
    parser.add_argument(
        "--serve",
        type=Path,
        default=SERVE,
        help="the script that starts the replica (default deploy/serve), e.g. an earlier "
        "version's copy, with its granian.env beside it, to compare",
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Restart:
    """One restart: seconds from the start of `deploy/serve` to each first 200, and the CPU
    seconds its processes had used by the last of them."""

    health_s: float
    readiness_s: float
    item_s: float
    cpu_s: float


# --- pure parts ---------------------------------------------------------------------------


def stat_fields(stat: str) -> tuple[int, int]:
    """A `/proc/<pid>/stat` line's process group and CPU clock ticks: its own user and
    system time and that of the children it has waited for (the check `deploy/serve` ran
    before it became Granian)."""
    # The command name (field 2) is in parentheses and may hold blanks: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): pgrp is field 5; utime, stime, cutime, cstime 14 to 17.
    return int(fields[2]), sum(int(value) for value in fields[11:15])


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(restarts: Sequence[Restart]) -> dict[str, Any]:
    """Per figure of a restart, the median, minimum and maximum over the rounds."""
    figures = [asdict(restart) for restart in restarts]
    columns = {name: [figure[name] for figure in figures] for name in figures[0]}
    return {name: {**summary(values), "rounds": values} for name, values in columns.items()}


# --- the processes ------------------------------------------------------------------------


def group_cpu_seconds(group: int) -> float:
    """CPU seconds used by the live processes of process group `group`, and by the
    children they waited for."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError):
            found, used = stat_fields(stat.read_text())
            if found == group:
                ticks += used
    return ticks / CLOCK_TICKS


def answers_200(port: int, path: str, headers: Mapping[str, str], deadline: float) -> bool:
    """Whether `GET path` answers 200; False at once when nothing listens yet. A request
    that was accepted waits for its answer (Granian listens before its workers are up)."""
    timeout = max(deadline - time.monotonic(), 0.1)
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=dict(headers))
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


def restart(serve: Path, env: Mapping[str, str], item_path: str, token: str, log: Path) -> Restart:
    """Start `serve` (`deploy/serve`) cold and time its first answers; always stop it."""
    port = free_port()
    address = listening_on(port)
    paths = {"health": "/health", "readiness": "/api/health", "item": item_path}
    bearer = {"Authorization": f"Bearer {token}"}
    answered: dict[str, float] = {}
    started = time.monotonic()
    process = launch([str(serve)], {**env, **address, "APP_TARGET": BACKOFFICE}, log)
    try:
        deadline = started + START_TIMEOUT
        for probe in PROBES:
            headers = bearer if probe == "item" else {}
            while not answers_200(port, paths[probe], headers, deadline):
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no 200 from {paths[probe]} in time; see {log}")
                time.sleep(POLL_S)
            answered[probe] = time.monotonic() - started
        cpu = group_cpu_seconds(process.pid)
    finally:
        stop(process)
    return Restart(answered["health"], answered["readiness"], answered["item"], cpu)


def timed_run(command: Sequence[str], env: Mapping[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one process run to its end, and what it printed."""
    before = os.times()
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 (our own entry points)
        list(command), cwd=ROOT, env=dict(env), capture_output=True, text=True, check=True
    )
    wall = time.monotonic() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu, done.stdout


#: A worker's part: import the entry point Granian loads (it builds the app), and say how
#: many modules that took.
WORKER_IMPORT = f"import sys, {BACKOFFICE.split(':')[0]}; print(len(sys.modules))"


def parts(env: Mapping[str, str], rounds: int) -> dict[str, Any]:
    """The configuration check and a worker's import, each run alone `rounds` times."""
    check = [timed_run([sys.executable, "-m", "backoffice.startup"], env) for _ in range(rounds)]
    worker = [timed_run([sys.executable, "-c", WORKER_IMPORT], env) for _ in range(rounds)]
    return {
        "check_wall_s": summary([wall for wall, _, _ in check]),
        "check_cpu_s": summary([cpu for _, cpu, _ in check]),
        "worker_import_wall_s": summary([wall for wall, _, _ in worker]),
        "worker_import_cpu_s": summary([cpu for _, cpu, _ in worker]),
        "worker_modules": int(worker[0][2]),
    }


@contextmanager
def loaded_sibling(env: Mapping[str, str], item_path: str, token: str) -> Iterator[dict[str, Any]]:
    """A second instance answering the item read to wrk until the block ends; yields a
    dict that holds wrk's figures afterwards."""
    figures: dict[str, Any] = {}
    with running("granian", BACKOFFICE, env, LOGS / "restart-sibling.log") as base:
        command = [
            "wrk",
            "-t1",
            f"-c{LOAD_CONNECTIONS}",
            "-d3600s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            base + item_path,
        ]
        wrk = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
        try:
            time.sleep(LOAD_LEAD_S)
            yield figures
        finally:
            wrk.send_signal(signal.SIGINT)  # wrk prints its report on SIGINT
            output, _ = wrk.communicate(timeout=30)
        with suppress(RuntimeError, KeyError):
            result = parse(output)
            figures.update(requests=result.requests, rps=result.rps, non_2xx=result.non_2xx)


def environment(url: str, broker: str) -> dict[str, str]:
    return {
        **app_environment(url),
        "CELERY_BROKER_URL": broker,
        "INSTANCE_PATH": str(LOGS / "restart-instance"),
        "LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(LOGS / "restart-prometheus"),
    }


def fixtures(env: Mapping[str, str]) -> tuple[str, str]:
    """A member's access token and the path of an item."""
    app = create_app(load_settings(env))
    with app.app_context():
        member = users.create_user("Bench", "restart@example.com", "restart bench password")
        token: str = auth.issue_tokens(member)["access_token"]
        item = items.create_item("Restart bench item", quantity=1)
    return token, f"{app.config['API_PREFIX']}/items/{item.id}"


def print_results(results: Mapping[str, Any]) -> None:
    print(f"\n{'':<10} {'/health s':>10} {'/api/health s':>14} {'item read s':>12} {'CPU s':>7}")
    for phase in ("idle", "load"):
        found = results[phase]
        print(
            f"{phase:<10} {found['health_s']['median']:>10.2f} "
            f"{found['readiness_s']['median']:>14.2f} {found['item_s']['median']:>12.2f} "
            f"{found['cpu_s']['median']:>7.2f}"
        )
    print("(medians of the rounds, from the start of deploy/serve)")
    for phase in ("idle", "load"):
        found = results["parts"][phase]
        print(
            f"{phase}: the check {found['check_wall_s']['median']:.2f}s "
            f"({found['check_cpu_s']['median']:.2f} CPU s), a worker's import "
            f"{found['worker_import_wall_s']['median']:.2f}s "
            f"({found['worker_import_cpu_s']['median']:.2f} CPU s, "
            f"{found['worker_modules']} modules)"
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    url = os.environ.get("BENCH_RESTART_DATABASE_URL", DEFAULT_URL)
    broker = os.environ.get("BENCH_RESTART_BROKER_URL", DEFAULT_BROKER)
    LOGS.mkdir(exist_ok=True)
    env = environment(url, broker)
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(exist_ok=True)
    print("Preparing the database and the broker", flush=True)
    recreate(url)
    flask(env, "db", "upgrade", timeout=120)
    with redis.Redis.from_url(broker) as client:
        client.flushdb()
    token, item_path = fixtures(env)
    log = LOGS / "restart-replica.log"
    load_before = os.getloadavg()
    results: dict[str, Any] = {"load_average_before": load_before}
    idle = []
    for number in range(1, args.rounds + 1):
        idle.append(restart(args.serve, env, item_path, token, log))
        print(f"  idle restart {number}: {idle[-1]}", flush=True)
    results["idle"] = summarize(idle)
    results["parts"] = {"idle": parts(env, args.rounds)}
    loaded = []
    with loaded_sibling(env, item_path, token) as sibling:
        for number in range(1, args.rounds + 1):
            loaded.append(restart(args.serve, env, item_path, token, log))
            print(f"  loaded restart {number}: {loaded[-1]}", flush=True)
        results["parts"]["load"] = parts(env, args.rounds)
    results["load"] = {**summarize(loaded), "sibling": sibling}
    print_results(results)
    return {
        "machine": machine(),
        "serve": str(args.serve),
        "load_generator": {"connections": LOAD_CONNECTIONS, "endpoint": "GET /api/items/<id>"},
        "server_logs": str(LOGS),
        **results,
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(lambda: run(args), kind="restart")


if __name__ == "__main__":
    sys.exit(main())
