"""`uv run python -m bench.prune`: prune 100,000 keyed POSTs' idempotency records while a
client measures the latency of the requests served meanwhile.

1. A fresh PostgreSQL database (`BENCH_PRUNE_DATABASE_URL`, default
   `postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench_prune`, dropped and
   recreated), migrated.
2. One real keyed `POST /api/items` through the API; its stored record (the answer a
   retry would replay) is then copied by bulk insert into 100,000 expired
   records with keys of their own, plus 10,000 unexpired ones that must be kept. A bulk
   insert, because 100,000 POSTs through the API would take minutes and leave the same
   rows. Revoked tokens, jobs and webhook events get 100,000 rows each too (5% due,
   written in time order as the service writes them), so that the plans of every rule
   are read at that size: `EXPLAIN ANALYZE` of one batch and of the overdue lookup per
   rule, rolled back.
3. The app under the production server (`deploy/serve`, Granian); a closed-loop client
   (`--clients` threads, keep-alive) sends keyed `POST /api/items` and `GET /api/items/<id>`
   for `--before` seconds, then `flask prune`'s housekeeping runs in a process of its own
   (as a worker would), and the load goes on until it ends.
4. Printed and written to `bench/results/prune-<time>.json`: the prune's time and rows per
   table, and p50/p99 and req/s of the requests before and during the prune.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.sql import ClauseElement

from backoffice import create_app, housekeeping
from backoffice.auth import service as auth
from backoffice.auth.models import RevokedToken
from backoffice.config import load_settings
from backoffice.database import autocommit, new_id, utcnow
from backoffice.extensions import db
from backoffice.idempotency.models import IdempotencyRecord
from backoffice.jobs.models import Job
from backoffice.users import service as users
from backoffice.webhooks.models import WebhookEvent
from bench import ROOT
from bench.__main__ import app_environment
from bench.database import flask, recreate
from bench.report import RESULTS, machine
from bench.servers import BACKOFFICE, running

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench_prune"
EXPIRED = 100_000
LIVE = 10_000
WORK_ROWS = 100_000
INSERT_BATCH = 10_000
#: Jobs and webhook events finished over this span (30 days' retention + 1.5 days).
SPAN = timedelta(days=31.5)
LOGS = Path(tempfile.gettempdir()) / "backoffice-bench"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.prune", description=__doc__)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--before", type=float, default=10.0, help="seconds of load first")
    parser.add_argument("--prune-once", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def environment(url: str) -> dict[str, str]:
    """The bench's production profile, quieter, with an instance folder of its own."""
    return {
        **app_environment(url),
        "INSTANCE_PATH": str(LOGS / "prune-instance"),
        "LOG_LEVEL": "WARNING",
    }


# --- the data --------------------------------------------------------------------------


def fill(env: Mapping[str, str]) -> tuple[str, dict[str, float]]:
    """The rows to prune (see the module's docstring); a member's access token, and the
    size of idempotency_records."""
    app = create_app(load_settings(env))
    with app.app_context():
        member = users.create_user("Bench", "prune@example.com", secrets.token_urlsafe(16))
        token: str = auth.issue_tokens(member)["access_token"]
        answer = app.test_client().post(
            "/api/items",
            base_url="http://127.0.0.1",
            json={"name": "Widget", "description": "Blue, 10 cm", "quantity": 12},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "template"},
        )
        assert answer.status_code == 201, answer.get_data(as_text=True)
        template = db.session.scalars(select(IdempotencyRecord)).one()
        now = utcnow()
        ttl = timedelta(seconds=app.config["IDEMPOTENCY_TTL_SECONDS"])

        def records(count: int, start: int, expired: bool) -> list[dict[str, Any]]:
            rows = []
            for n in range(start, start + count):
                # Expired over the last day, or expiring over the next one.
                expires = now - timedelta(seconds=n % 86400 + 1) * (1 if expired else -1)
                rows.append(
                    {
                        "id": new_id(),
                        "principal": template.principal,
                        "key": f"bench-{n}",
                        "fingerprint": template.fingerprint,
                        "expires_at": expires,
                        "status_code": template.status_code,
                        "response_headers": template.response_headers,
                        "response_body": template.response_body,
                        "created_at": expires - ttl,
                        "updated_at": expires - ttl,
                    }
                )
            return rows

        _insert(IdempotencyRecord, lambda start, size: records(size, start, True), EXPIRED)
        _insert(IdempotencyRecord, lambda start, size: records(size, EXPIRED + start, False), LIVE)
        _insert(RevokedToken, lambda start, size: _revoked(now, start, size), WORK_ROWS)
        _insert(Job, lambda start, size: _jobs(member.id, now, start, size), WORK_ROWS)
        _insert(WebhookEvent, lambda start, size: _events(now, start, size), WORK_ROWS)
        with autocommit(db.engine).connect() as connection:
            connection.execute(text("VACUUM ANALYZE"))
            size = connection.execute(
                text(
                    "SELECT avg(pg_column_size(r.*)), "
                    "pg_total_relation_size('idempotency_records') FROM idempotency_records r"
                )
            ).one()
        db.engine.dispose()
    return token, {"row_bytes": round(float(size[0])), "table_mb": round(size[1] / 2**20, 1)}


def _insert(model: type, make: Any, count: int) -> None:
    for start in range(0, count, INSERT_BATCH):
        db.session.execute(insert(model), make(start, min(INSERT_BATCH, count - start)))
        db.session.commit()


def _finished(now: datetime, n: int) -> datetime:
    """Rows finish in the order they were written, over the last 31.5 days: the oldest
    twentieth is past a 30-day retention (a day and a half of backlog)."""
    return now - SPAN + SPAN * n / WORK_ROWS


def _revoked(now: datetime, start: int, size: int) -> list[dict[str, Any]]:
    """Revocations in the order they were made, of tokens expiring from 0.7 days ago to
    two weeks ahead: one in twenty has expired."""
    first, span = now - timedelta(days=0.7), timedelta(days=14)
    return [
        {"jti": f"jti-{n}", "expires_at": first + span * n / WORK_ROWS}
        for n in range(start, start + size)
    ]


def _jobs(owner: uuid.UUID, now: datetime, start: int, size: int) -> list[dict[str, Any]]:
    statuses = ("succeeded", "succeeded", "failed", "cancelled", "queued")
    return [
        {
            "id": new_id(),
            "user_id": owner,
            "type": "text-analysis",
            "input": {"text": "to be or not to be"},
            "status": statuses[n % 5],
            "attempts": 1,
            "progress": 100,
            "result": {"words": 6},
            "finished_at": None if statuses[n % 5] == "queued" else _finished(now, n),
            "created_at": now - timedelta(days=100),
            "updated_at": now,
        }
        for n in range(start, start + size)
    ]


def _events(now: datetime, start: int, size: int) -> list[dict[str, Any]]:
    statuses = ("processed", "processed", "ignored", "failed", "received")
    return [
        {
            "id": new_id(),
            "source": "bench",
            "delivery_id": f"msg_{n}",
            "event_type": "invoice.paid",
            "payload": {"type": "invoice.paid", "amount": n},
            "raw_body": b'{"type": "invoice.paid", "amount": %d}' % n,
            "status": statuses[n % 5],
            "attempts": 1,
            "finished_at": None if statuses[n % 5] == "received" else _finished(now, n),
            "created_at": now - timedelta(days=100),
            "updated_at": now,
        }
        for n in range(start, start + size)
    ]


def plans(env: Mapping[str, str]) -> dict[str, list[str]]:
    """`EXPLAIN ANALYZE` of one batch and of the overdue lookup per rule, rolled back."""
    app = create_app(load_settings(env))
    found: dict[str, list[str]] = {}
    now = utcnow()
    with app.app_context(), db.engine.connect() as connection:
        for number, rule in enumerate(housekeeping.rules(app)):
            label = f"{number}. {rule.name}: {_sql(rule.where(now))}"
            size = app.config["PRUNE_BATCH_SIZE"]
            statement = housekeeping.batch_statement(rule, now, size, "postgresql")
            found[f"{label}: batch"] = _explain(connection, statement)
            found[f"{label}: overdue"] = _explain(
                connection, housekeeping.oldest_statement(rule, now)
            )
            connection.rollback()
        db.engine.dispose()
    return found


def _sql(clause: ClauseElement) -> str:
    """The clause as PostgreSQL runs it, its values written in."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    compiled = clause.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return " ".join(str(compiled).split())


def _explain(connection: Connection, statement: ClauseElement) -> list[str]:
    rows = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) {_sql(statement)}")
    return [row[0] for row in rows]


# --- the load --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    ended: float
    latency_ms: float
    status: int


def client(base: str, token: str, stop: threading.Event, out: list[Sample]) -> None:
    """Keyed creates and reads of what was created, one after the other, until `stop`."""
    address = urlsplit(base)
    connection = http.client.HTTPConnection(str(address.hostname), address.port, timeout=30)
    auth = {"Authorization": f"Bearer {token}"}
    item_id = None
    while not stop.is_set():
        if item_id is None:
            body = json.dumps({"name": "Gear", "quantity": 3})
            headers = {**auth, "Content-Type": "application/json"}
            headers["Idempotency-Key"] = uuid.uuid4().hex
            method, path = "POST", "/api/items"
        else:
            body, headers, method, path = None, auth, "GET", f"/api/items/{item_id}"
        started = time.monotonic()
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        out.append(Sample(time.time(), (time.monotonic() - started) * 1000, response.status))
        item_id = json.loads(data)["id"] if method == "POST" and response.status == 201 else None
    connection.close()


def summary(samples: list[Sample], seconds: float) -> dict[str, Any]:
    latencies = sorted(s.latency_ms for s in samples)
    centiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(samples),
        "rps": round(len(samples) / seconds, 1),
        "p50_ms": round(centiles[49], 2),
        "p99_ms": round(centiles[98], 2),
        "max_ms": round(latencies[-1], 2),
        "non_2xx": sum(1 for s in samples if not 200 <= s.status < 300),
    }


def prune_in_a_process(env: Mapping[str, str]) -> dict[str, Any]:
    """Run the housekeeping once in a process of its own, as a worker would."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.prune", "--prune-once"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def prune_once(env: Mapping[str, str]) -> None:
    app = create_app(load_settings(env))
    with app.app_context():
        started = time.time()
        deleted = housekeeping.prune()
        ended = time.time()
    print(json.dumps({"started": started, "ended": ended, "deleted": deleted}))


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = os.environ.get("BENCH_PRUNE_DATABASE_URL", DEFAULT_URL)
    env = environment(url)
    LOGS.mkdir(exist_ok=True)
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"Preparing {shown}: {EXPIRED:,} expired records, {LIVE:,} live ones", flush=True)
    recreate(url)
    flask(env, "db", "upgrade", timeout=120)
    token, records_size = fill(env)
    print("Plans (EXPLAIN ANALYZE, rolled back):", flush=True)
    explained = plans(env)
    for label, lines in explained.items():
        print(f"  {label}\n    " + "\n    ".join(lines), flush=True)
    log = LOGS / "prune-server.log"
    samples: list[Sample] = []
    with running("granian", BACKOFFICE, env, log) as base:
        stop = threading.Event()
        threads = [
            threading.Thread(target=client, args=(base, token, stop, samples))
            for _ in range(args.clients)
        ]
        started = time.time()
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # warm-up: connections and caches
        before_from = time.time()
        time.sleep(args.before)
        pruned = prune_in_a_process(env)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    before = [s for s in samples if before_from <= s.ended < pruned["started"]]
    during = [s for s in samples if pruned["started"] <= s.ended <= pruned["ended"]]
    seconds = pruned["ended"] - pruned["started"]
    return {
        "database": shown,
        "records": {"expired": EXPIRED, "live": LIVE, **records_size},
        "work_rows": WORK_ROWS,
        "batch_size": int(load_settings(env)["PRUNE_BATCH_SIZE"]),
        "prune_seconds": round(seconds, 2),
        "deleted": pruned["deleted"],
        "clients": args.clients,
        "before": summary(before, pruned["started"] - before_from),
        "during": summary(during, seconds),
        "plans": explained,
        "machine": machine(),
        "load_started": started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prune_once:
        prune_once(os.environ)
        return 0
    results = run(args)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"prune-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nPrune: {results['prune_seconds']} s, deleted {results['deleted']}")
    for phase in ("before", "during"):
        print(f"  {phase:<7} {results[phase]}")
    print(f"Results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
