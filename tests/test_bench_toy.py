"""The bench's toy reference runs as the tutorials run it, and is compared by every table."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

from bench.apps import TOY
from bench.load import Endpoint, Result
from bench.report import Measurement, checks, rows
from bench.servers import TOY_WORKERS, running


def test_the_toy_serves_its_items_under_gunicorn_with_four_sync_workers(tmp_path: Path):
    log = tmp_path / "toy.log"
    with running(TOY.server or "", TOY.target, dict(os.environ), log) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        item = next(e for e in TOY.endpoints if e.key == "item")
        connection.request("GET", item.path)
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["id"] in item.path
        connection.close()
    started = log.read_text()
    assert "Using worker: sync" in started
    assert started.count("Booting worker with pid") == TOY_WORKERS


def measurement(app: str, key: str, rps: float) -> Measurement:
    result = Result(
        requests=int(rps),
        rps=rps,
        latency_ms=dict.fromkeys((50, 75, 90, 99), 1.0),
        non_2xx=0,
        socket_errors=0,
    )
    return Measurement(app, Endpoint(key, key, f"/{key}"), [result])


def test_backoffice_rows_carry_their_ratio_to_the_toy_and_the_aims_are_checked():
    measured = [
        measurement("raw", "health", 10_000),
        *(
            measurement(app, key, 1000)
            for app in ("flask", "toy")
            for key in ("item", "list", "create")
        ),
        measurement("backoffice", "item", 600),
        measurement("backoffice", "list", 300),
        measurement("backoffice", "deep", 300),
        measurement("backoffice", "create", 400),
        measurement("backoffice", "order", 300),
        measurement("backoffice", "webhook", 1600),
        measurement("backoffice", "process", 600),
    ]
    table = {(row["app"], row["endpoint"]): row for row in rows(measured)}
    assert table[("backoffice", "item")]["x_toy"] == 0.6
    assert table[("backoffice", "deep")]["x_toy"] == 0.3  # compared with the toy's list page
    assert table[("toy", "item")]["x_toy"] is None
    verdicts = {check["check"]: check["ok"] for check in checks(measured, oversold=0)}
    assert verdicts["item read req/s / toy's"] is True  # 0.6
    assert verdicts["item create req/s / toy's"] is True  # 0.4
    assert verdicts["first page req/s / item read's"] is False  # 0.5 < 0.8
    assert verdicts["webhook intake req/s"] is True
    assert verdicts["webhook intake req/s / toy's create"] is True  # 1.6
    assert verdicts["order create req/s / item create's"] is True  # 0.75
