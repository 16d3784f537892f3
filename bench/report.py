"""Ratios, target checks, the printed table and the JSON results file."""

from __future__ import annotations

import json
import operator
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import BENCH
from bench.apps import FLASK_MATCH
from bench.load import Endpoint, Result, combine

RESULTS = BENCH / "results"
RELATIONS = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Measurement:
    app: str
    endpoint: Endpoint
    rounds: list[Result]

    @property
    def result(self) -> Result:
        return combine(self.rounds)

    @property
    def spread(self) -> float:
        """How far apart the rounds' req/s are, relative to their mean."""
        rates = [r.rps for r in self.rounds]
        return (max(rates) - min(rates)) / self.result.rps


def _by_key(measured: Sequence[Measurement], app: str) -> dict[str, Result]:
    return {m.endpoint.key: m.result for m in measured if m.app == app}


def rows(measured: Sequence[Measurement]) -> list[dict[str, Any]]:
    """One row per measurement, Backoffice's with its ratios to the references."""
    raw = _by_key(measured, "raw")["health"].rps
    flask, toy = _by_key(measured, "flask"), _by_key(measured, "toy")
    table = []
    for m in measured:
        match = FLASK_MATCH.get(m.endpoint.key, m.endpoint.key)
        ours = m.app == "backoffice"
        table.append(
            {
                "app": m.app,
                "endpoint": m.endpoint.key,
                "label": m.endpoint.label,
                "path": m.endpoint.path,
                "requests": m.result.requests,
                "rps": m.result.rps,
                "latency_ms": m.result.latency_ms,
                "non_2xx": m.result.non_2xx,
                "socket_errors": m.result.socket_errors,
                "rounds": [{"rps": r.rps, "latency_ms": r.latency_ms} for r in m.rounds],
                "rps_spread": m.spread,
                "x_raw": m.result.rps / raw,
                "x_flask": m.result.rps / flask[match].rps if ours else None,
                "x_toy": m.result.rps / toy[match].rps if ours else None,
            }
        )
    return table


def check(name: str, value: float, relation: str, target: float) -> dict[str, Any]:
    compare: Callable[[float, float], bool] = RELATIONS[relation]
    return {
        "check": name,
        "value": value,
        "target": f"{relation} {target}",
        "ok": compare(value, target),
    }


def checks(measured: Sequence[Measurement], oversold: int) -> list[dict[str, Any]]:
    ours, flask = _by_key(measured, "backoffice"), _by_key(measured, "flask")
    toy = _by_key(measured, "toy")
    return [
        # Issue 23's aims, against the tutorials' toy (Gunicorn, 4 sync workers).
        check("item read req/s / toy's", ours["item"].rps / toy["item"].rps, ">=", 0.6),
        check("item create req/s / toy's", ours["create"].rps / toy["create"].rps, ">=", 0.4),
        check("first page req/s / item read's", ours["list"].rps / ours["item"].rps, ">=", 0.8),
        check("webhook intake req/s", ours["webhook"].rps, ">=", 1500),
        check(
            "webhook intake req/s / toy's create",
            ours["webhook"].rps / toy["create"].rps,
            ">=",
            0.45,
        ),
        check(
            "order create req/s / item create's", ours["order"].rps / ours["create"].rps, ">=", 0.7
        ),
        check("catalogue items oversold after the run", oversold, "<=", 0),
        check("deep page p50 / first page p50", ours["deep"].p50 / ours["list"].p50, "<=", 1.5),
        check("item read req/s / flask's", ours["item"].rps / flask["item"].rps, ">=", 0.4),
        check("item write req/s / flask's", ours["create"].rps / flask["create"].rps, ">=", 0.3),
        check(
            "webhook ingestion req/s / item write's",
            ours["webhook"].rps / ours["create"].rps,
            ">=",
            0.5,
        ),
        check("/process req/s / item read's", ours["process"].rps / ours["item"].rps, ">=", 0.8),
    ]


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def print_table(table: Sequence[dict[str, Any]], found: Sequence[dict[str, Any]]) -> None:
    header = (
        f"{'endpoint':<48} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'xraw':>6} {'xflask':>6}"
        f" {'xtoy':>6} {'spread':>6}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for row in table:
        label = row["label"] if row["app"] == "backoffice" else f"[{row['app']}] {row['label']}"
        latency = row["latency_ms"]
        print(
            f"{label:<48} {row['rps']:>9.1f} {latency[50]:>8.2f} {latency[99]:>8.2f} "
            f"{_ratio(row['x_raw']):>6} {_ratio(row['x_flask']):>6} {_ratio(row.get('x_toy')):>6}"
            f" {row['rps_spread']:>6.0%}"
        )
        if row["non_2xx"] or row["socket_errors"]:
            print(f"  ! {row['non_2xx']} non-2xx answers, {row['socket_errors']} socket errors")
    print("(req/s and latencies: mean of the rounds; spread: their req/s range / mean)\n")
    print_checks(found)


def print_checks(found: Sequence[dict[str, Any]]) -> None:
    for aim in found:
        verdict = "ok" if aim["ok"] else "MISSED"
        print(f"{aim['check']}: {aim['value']:.2f} (target {aim['target']}) {verdict}")


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": models[0] if models else platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write(results: dict[str, Any], kind: str | None = None) -> Path:
    """`results/<UTC timestamp>.json` and `results/latest.json`, or for another kind of
    run only `results/<kind>-<UTC timestamp>.json`; returns the first."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps({"timestamp": stamp, **results}, indent=2, ensure_ascii=False) + "\n"
    path = RESULTS / (f"{kind}-{stamp}.json" if kind else f"{stamp}.json")
    path.write_text(text)
    if kind is None:
        (RESULTS / "latest.json").write_text(text)
    return path
