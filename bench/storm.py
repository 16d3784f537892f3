"""`uv run python -m bench.storm [--server granian|gunicorn]`: the item read beside a
login storm.

A client that keeps sending wrong passwords is refused with 429 once past
`LOGIN_RATE_LIMIT`; the refusals should cost the other clients little. The aims: during a
storm of 50 connections, the authenticated item read measured beside it (20 connections)
keeps at least 0.6x its solo throughput (issue 23; 0.7x before), with its p99 under 100 ms.

1. The bench's database and fixtures (`python -m bench`'s: migrated, 100,000 items, a
   member and their access token), and Backoffice alone under the production server.
2. A warm-up of the item read, then `--rounds` rounds, each of: `GET /api/items/<id>`
   with `wrk -c20` for `--duration` seconds alone; then the same while a second wrk
   (`-c50`, `bench/post_login_wrong.lua`) posts the member's email with a wrong password
   to the login endpoint, started a second before the read and ending a second after.
3. Printed as a markdown table, and written to `bench/results/storm-<time>.json`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from backoffice.config import load_settings
from bench.__main__ import (
    LOGS,
    app_environment,
    database_url,
    load_options,
    prepare,
    run_and_report,
)
from bench.apps import backoffice
from bench.load import Endpoint, Result, combine, parse, warm_up, wrk, wrk_output, wrk_params
from bench.report import check, machine
from bench.servers import BACKOFFICE, running, settings

READ_CONNECTIONS = 20
STORM_CONNECTIONS = 50
#: The storm starts this many seconds before the read's measurement and ends as long after.
LEAD_S = 1
#: The aims: the read's req/s during the storm over its solo req/s, and its p99 then.
SOLO_SHARE = 0.6
P99_MS = 100.0
#: The storm measures what it should only if the limiter refuses almost all of it.
REFUSED_SHARE = 0.95


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__)
    load_options(parser, rounds="solo/storm rounds", duration="seconds of read per measure")
    return parser.parse_args(argv)


def storm_endpoint(prefix: str) -> Endpoint:
    path = f"{prefix}/auth/token"
    return Endpoint("storm", f"POST {path} (wrong password)", path, "post_login_wrong.lua")


def statuses(output: str) -> dict[int, int]:
    """Answers by status, as bench/post_login_wrong.lua prints them after wrk's report."""
    counts: dict[int, int] = {}
    for status, count in re.findall(r"^status (\d+): (\d+)$", output, re.MULTILINE):
        counts[int(status)] = counts.get(int(status), 0) + int(count)
    return counts


def refused_share(counts: dict[int, int]) -> float:
    answered = sum(counts.values())
    return counts.get(429, 0) / answered if answered else 0.0


def aims(solo: Result, during: Result, counts: dict[int, int]) -> list[dict[str, Any]]:
    return [
        check("item read req/s during the storm / solo", during.rps / solo.rps, ">=", SOLO_SHARE),
        check("item read p99 ms during the storm", during.latency_ms[99], "<", P99_MS),
        check(
            "share of the storm's answers that are 429", refused_share(counts), ">=", REFUSED_SHARE
        ),
    ]


def beside_storm(
    url: str, read: Endpoint, storm: Endpoint, seconds: int
) -> tuple[Result, Result, dict[int, int]]:
    """The read measured while the storm runs; the storm's own result and status mix."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        storming = pool.submit(wrk_output, url, storm, seconds + 2 * LEAD_S, STORM_CONNECTIONS)
        time.sleep(LEAD_S)
        measured = wrk(url, read, seconds, READ_CONNECTIONS)
        output = storming.result()
    return measured, parse(output), statuses(output)


def _summary(rounds: list[Result]) -> dict[str, Any]:
    return {**asdict(combine(rounds)), "rounds": [asdict(r) for r in rounds]}


def table(solo: Result, during: Result, storm: Result, counts: dict[int, int]) -> str:
    answered = sum(counts.values()) or 1
    mix = ", ".join(f"{s}: {n / answered:.1%}" for s, n in sorted(counts.items()))
    lines = [
        "| | req/s | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, result in (
        (f"item read, solo (-c{READ_CONNECTIONS})", solo),
        (f"item read, during the storm (-c{READ_CONNECTIONS})", during),
        (f"login storm (-c{STORM_CONNECTIONS}; {mix})", storm),
    ):
        latency = result.latency_ms
        lines.append(
            f"| {label} | {result.rps:.1f} | {latency[50]:.2f} | {latency[99]:.2f} "
            f"| {result.non_2xx} | {result.socket_errors} |"
        )
    return "\n".join(lines)


def checks_table(found: Sequence[dict[str, Any]]) -> str:
    lines = ["| check | value | target | |", "|---|---:|---|---|"]
    for aim in found:
        verdict = "ok" if aim["ok"] else "MISSED"
        lines.append(f"| {aim['check']} | {aim['value']:.2f} | {aim['target']} | {verdict} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    url = database_url()
    env = app_environment(url)
    shown, fixtures = prepare(url, env)
    read = next(e for e in backoffice(fixtures).endpoints if e.key == "item")
    storm = storm_endpoint(load_settings(env)["API_PREFIX"])
    LOGS.mkdir(exist_ok=True)
    log = LOGS / f"{args.server}-storm.log"
    print(f"Starting Backoffice under {args.server} (log: {log})", flush=True)
    solo: list[Result] = []
    during: list[Result] = []
    storms: list[Result] = []
    counts: dict[int, int] = {}
    load_before = os.getloadavg()
    with running(args.server, BACKOFFICE, env, log) as base:
        warm_up(base, read, args.warmup)
        for number in range(1, args.rounds + 1):
            solo.append(wrk(base, read, args.duration, READ_CONNECTIONS))
            measured, stormed, mix = beside_storm(base, read, storm, args.duration)
            during.append(measured)
            storms.append(stormed)
            for status, count in mix.items():
                counts[status] = counts.get(status, 0) + count
            print(
                f"  round {number}: read solo {solo[-1].rps:>8.1f} req/s, during the storm "
                f"{measured.rps:>8.1f} req/s; storm {stormed.rps:>8.1f} req/s {mix}",
                flush=True,
            )
    found = aims(combine(solo), combine(during), counts)
    print(f"\n{table(combine(solo), combine(during), combine(storms), counts)}\n")
    print(f"{checks_table(found)}\n(req/s and latencies: mean of the rounds)")
    return {
        "server": settings(args.server),
        "wrk": {
            **wrk_params(args.duration, args.warmup, args.rounds),
            "connections": READ_CONNECTIONS,
            "storm_connections": STORM_CONNECTIONS,
            "storm_s_per_round": args.duration + 2 * LEAD_S,
            "storm_lead_s": LEAD_S,
        },
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "database": {"url": shown, **fixtures.postgres},
        "read": {"path": read.path, "solo": _summary(solo)},
        "read_during_storm": _summary(during),
        "storm": {"path": storm.path, "statuses": counts, **_summary(storms)},
        "ratio": combine(during).rps / combine(solo).rps,
        "checks": found,
        "server_log": str(log),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(lambda: run(args), kind="storm")


if __name__ == "__main__":
    sys.exit(main())
