"""`uv run python -m bench.isolation [--topology current|before]`: the item read beside
clients that would hold the server's capacity.

The guarantee (docs/operations/isolation.md): while slow clients trickle their bodies, and while
members hold every chat call the service lets them, another user's item reads keep a p99
under 100 ms. Measured on `deploy/serve` (2 workers) reached directly, no Nginx:

1. The bench's database and fixtures (`python -m bench`'s), four more members, and a fake
   model server (`bench.fake_llm`) that streams a delta every half second.
2. A warm-up of the item read, then `--rounds` rounds of three measurements of
   `GET /api/items/<id>` with `wrk -c20` for `--duration` seconds: alone; beside
   `SLOW_CLIENTS` connections that announce a 1,000-byte login body and send a byte every
   half second; and beside the members' chat streams, opened until every place is taken.
3. A markdown table, and `bench/results/isolation-<time>.json`.

`--topology before` serves the app as this project did before the front of
`backoffice.serving`: Granian's WSGI interface (4 blocking threads) and chat calls not
bounded, for the comparison docs/operations/isolation.md shows.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict
from typing import Any

from backoffice import create_app
from backoffice.auth import service as auth
from backoffice.config import load_settings
from backoffice.extensions import db
from backoffice.users import service as users
from bench.__main__ import (
    LOGS,
    app_environment,
    database_url,
    load_options,
    prepare,
    run_and_report,
)
from bench.apps import backoffice
from bench.fake_llm import serving
from bench.load import Result, combine, warm_up, wrk, wrk_params
from bench.report import check, machine
from bench.servers import BACKOFFICE, BACKOFFICE_WSGI, HOST, running, settings

READ_CONNECTIONS = 20
#: Four times the app's threads of both workers.
SLOW_CLIENTS = 32
#: Seconds between the slow clients' bytes, and between the model server's deltas.
TRICKLE_S = 0.5
MEMBERS = 4
#: Streams enough to hold every thread of both workers, unbounded: what the review opened.
ENOUGH_STREAMS = 8
#: The aims: the read's p99 beside each load, and its throughput over its solo throughput.
P99_MS = 100.0
SOLO_SHARE = 0.8
#: What each topology serves (the WSGI target runs under Granian's WSGI interface with 4
#: blocking threads: `bench.servers`), and the settings it adds.
TOPOLOGIES: dict[str, tuple[str, dict[str, str]]] = {
    "current": (BACKOFFICE, {}),
    # Chat calls effectively unbounded, as before.
    "before": (
        BACKOFFICE_WSGI,
        {"SERVER_THREADS": "256", "CHAT_CALLS_PER_PROCESS": "255", "CHAT_CALLS_PER_USER": "100"},
    ),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.isolation", description=__doc__)
    load_options(parser, rounds="rounds of the three measures", duration="seconds per measure")
    parser.add_argument("--topology", choices=sorted(TOPOLOGIES), default="current")
    return parser.parse_args(argv)


def member_tokens(env: dict[str, str]) -> list[str]:
    """Access tokens of `MEMBERS` new members, who will hold the chat calls."""
    app = create_app(load_settings(env))
    with app.app_context():
        tokens = []
        for n in range(MEMBERS):
            member = users.create_user(f"Chatter {n}", f"chatter-{n}@example.com", "x" * 16)
            tokens.append(str(auth.issue_tokens(member)["access_token"]))
        db.engine.dispose()
    return tokens


@contextmanager
def slow_bodies(port: int) -> Iterator[list[socket.socket]]:
    """`SLOW_CLIENTS` connections trickling a login body a byte every `TRICKLE_S`."""
    stop = threading.Event()
    sockets = []
    for _ in range(SLOW_CLIENTS):
        connection = socket.create_connection((HOST, port), timeout=30)
        connection.sendall(
            b"POST /api/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        sockets.append(connection)

    def trickle() -> None:
        while not stop.wait(TRICKLE_S):
            for connection in sockets:
                with suppress(OSError):  # answered (408) and closed
                    connection.sendall(b" ")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        thread.join()
        for connection in sockets:
            connection.close()


@contextmanager
def chat_streams(port: int, tokens: Sequence[str]) -> Iterator[dict[int, int]]:
    """Streams opened by the members until every place is taken (ten refusals in a row),
    or `ENOUGH_STREAMS` are open; how many were answered with each status (0: no answer
    within 5 s)."""
    statuses: dict[int, int] = {}
    with ExitStack() as stack:
        refusals = 0
        while refusals < 10:
            for token in tokens:
                connection = http.client.HTTPConnection(HOST, port, timeout=5)
                body = {"message": " ".join(["word"] * 1000), "stream": True}
                connection.request(
                    "POST",
                    "/api/chat",
                    body=json.dumps(body),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
                try:
                    response = connection.getresponse()
                except TimeoutError:
                    statuses[0] = statuses.get(0, 0) + 1
                    connection.close()
                    refusals += 1
                    continue
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status == 200:
                    response.readline()  # the first delta: the call is in flight
                    stack.callback(connection.close)
                    refusals = 0
                else:
                    response.read()
                    connection.close()
                    refusals += 1
            if statuses.get(200, 0) >= ENOUGH_STREAMS:
                break
        yield statuses


def p99(result: Result) -> float:
    """The p99 of the answered reads, or infinity when almost none were answered (reads
    still waiting when wrk stops are in no latency)."""
    return result.latency_ms[99] if result.requests >= 100 else float("inf")


def _summary(rounds: list[Result]) -> dict[str, Any]:
    return {**asdict(combine(rounds)), "rounds": [asdict(r) for r in rounds]}


def table(measured: dict[str, Result]) -> str:
    lines = [
        "| item read (-c20) | req/s | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, result in measured.items():
        latency = result.latency_ms
        lines.append(
            f"| {label} | {result.rps:.1f} | {latency[50]:.2f} | {latency[99]:.2f} "
            f"| {result.non_2xx} | {result.socket_errors} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    url = database_url()
    env = app_environment(url)
    shown, fixtures = prepare(url, env)
    tokens = member_tokens(env)
    read = next(e for e in backoffice(fixtures).endpoints if e.key == "item")
    LOGS.mkdir(exist_ok=True)
    log = LOGS / f"isolation-{args.topology}.log"
    rounds: dict[str, list[Result]] = {"alone": [], "beside slow bodies": [], "beside chats": []}
    chats: dict[int, int] = {}
    target, topology = TOPOLOGIES[args.topology]
    with serving(delay=TRICKLE_S) as model:
        served = {
            **env,
            "LLM_BASE_URL": model.url,
            "LLM_MODEL": "fake-model",
            "LLM_TIMEOUT": "30",
            "CHAT_RATE_LIMIT": "100000 per minute",
            **topology,
        }
        print(f"Starting Backoffice ({args.topology}) under granian (log: {log})", flush=True)
        with running("granian", target, served, log) as base:
            port = int(base.rsplit(":", 1)[1])
            warm_up(base, read, args.warmup)
            for number in range(1, args.rounds + 1):
                rounds["alone"].append(wrk(base, read, args.duration, READ_CONNECTIONS))
                with slow_bodies(port):
                    rounds["beside slow bodies"].append(
                        wrk(base, read, args.duration, READ_CONNECTIONS)
                    )
                with chat_streams(port, tokens) as statuses:
                    rounds["beside chats"].append(wrk(base, read, args.duration, READ_CONNECTIONS))
                    for status, count in statuses.items():
                        chats[status] = chats.get(status, 0) + count
                print(
                    f"  round {number}: "
                    + ", ".join(
                        f"{k} {v[-1].rps:.1f} req/s p99 {v[-1].latency_ms[99]:.1f} ms"
                        for k, v in rounds.items()
                    )
                    + f"; chat calls {statuses}",
                    flush=True,
                )
    measured = {label: combine(results) for label, results in rounds.items()}
    alone = measured["alone"]
    found = [
        check(f"item read p99 ms {label}", p99(result), "<", P99_MS)
        for label, result in measured.items()
    ] + [
        check(f"item read req/s {label} / alone", result.rps / alone.rps, ">=", SOLO_SHARE)
        for label, result in measured.items()
        if label != "alone"
    ]
    print(f"\n{table(measured)}\n")
    for aim in found:
        verdict = "ok" if aim["ok"] else "MISSED"
        print(f"{aim['check']}: {aim['value']:.2f} ({aim['target']}) {verdict}")
    return {
        "topology": args.topology,
        "server": {**settings("granian"), "target": target, **topology},
        "wrk": {
            **wrk_params(args.duration, args.warmup, args.rounds),
            "connections": READ_CONNECTIONS,
        },
        "slow_clients": SLOW_CLIENTS,
        "trickle_s": TRICKLE_S,
        "members": MEMBERS,
        "chat_calls_answered": chats,
        "machine": {**machine(), "loadavg_after": os.getloadavg()},
        "database": {"url": shown, **fixtures.postgres},
        "read": {"path": read.path, **{label: _summary(r) for label, r in rounds.items()}},
        "checks": found,
        "server_log": str(log),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(lambda: run(args), kind=f"isolation-{args.topology}")


if __name__ == "__main__":
    sys.exit(main())
