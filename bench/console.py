"""`uv run python -m bench.console [--items N] [--events N]`: server time per console page.

The issue's aim: at 100,000 items and 1,000,000 webhook events, every console page
answers in under 50 ms p50 on this machine, and a deep page of a list within 1.2x its
first page.

1. The bench's database (`python -m bench`'s: migrated, `--items` items, a member), then
   `--events` webhook events (a tenth of them failed, some waiting; finished over the last
   ten days), 10,000 jobs and 10,000 orders, inserted by `INSERT ... SELECT
   generate_series` in the database itself; an admin; one activity tally (what a worker
   does every minute), so the overview has its figures.
2. Backoffice alone under the production server; the admin signs in to the console.
3. Each page `--requests` times, one request at a time (after `--warmup` requests): the
   overview, and every list page the console has (items, webhook events, jobs, orders,
   users, ...) at its first page and at a deep one (a cursor the list itself would give,
   `--deep` rows from the newest or the middle of a smaller table). Server time is the
   time to the answer's last byte on the loopback, sequential: no queueing, little more
   than the server's own time.
4. p50/p99 per page, printed and written to `bench/results/console-<time>.json`.
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from flask import url_for
from sqlalchemy import text

from backoffice import activity, create_app
from backoffice.config import load_settings
from backoffice.extensions import db
from backoffice.pagination import encode_cursor
from backoffice.users import service as users
from backoffice.users.models import Role
from bench import database
from bench.__main__ import LOGS, app_environment, database_url, run_and_report
from bench.report import check, machine
from bench.servers import BACKOFFICE, SERVERS, running, settings

#: The aims: p50 of every page, and a deep page's p50 over its list's first page's.
P50_MS = 50.0
DEEP_RATIO = 1.2
ADMIN_EMAIL = "bench-admin@example.com"
#: The console's lists: endpoint, the table it pages, and its cursors' kind.
LISTS = (
    ("console.item_list", "items", "items"),
    ("console.event_list", "webhook_events", "webhook-events"),
    ("console.job_list", "jobs", "jobs"),
    ("console.order_list", "orders", "orders"),
    ("console.user_list", "users", "users"),
    ("console.todo_list", "todos", "todos"),
    ("console.key_list", "api_keys", "api-keys"),
)
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')

SEED_EVENTS = """
INSERT INTO webhook_events (id, created_at, updated_at, source, delivery_id, event_type,
    payload, raw_body, status, attempts, enqueued_at, started_at, finished_at, last_error)
SELECT gen_random_uuid(), at, at, 'bench', 'seed-' || n, 'payment_success',
    json_build_object('n', n), convert_to('{}', 'UTF8'),
    CASE WHEN n % 10 = 0 THEN 'failed' WHEN n % 1000 = 1 THEN 'received' ELSE 'processed' END,
    1, at, at, CASE WHEN n % 1000 = 1 THEN NULL ELSE at + interval '40 ms' END,
    CASE WHEN n % 10 = 0 THEN 'Rejected: no such order' END
FROM generate_series(1, :count) AS n, LATERAL (SELECT now() - n * :step * interval '1 s' AS at) t
"""
SEED_JOBS = """
INSERT INTO jobs (id, created_at, updated_at, user_id, type, input, progress, status, attempts,
    started_at, finished_at)
SELECT gen_random_uuid(), at, at, :user_id, 'text-analysis', '{"text": "x"}', 100,
    CASE WHEN n % 7 = 0 THEN 'failed' ELSE 'succeeded' END, 1, at, at + (n % 90) * interval '1 s'
FROM generate_series(1, :count) AS n, LATERAL (SELECT now() - n * interval '30 s' AS at) t
"""
SEED_ORDERS = """
INSERT INTO orders (id, created_at, updated_at, user_id, status, total_quantity, version, paid_at)
SELECT gen_random_uuid(), at, at, :user_id,
    CASE WHEN n % 3 = 0 THEN 'paid' ELSE 'pending' END, 1, 1,
    CASE WHEN n % 3 = 0 THEN at + interval '1 min' END
FROM generate_series(1, :count) AS n, LATERAL (SELECT now() - n * interval '60 s' AS at) t
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--server", choices=SERVERS, default="granian")
    parser.add_argument("--items", type=int, default=database.SEED_ITEMS)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=10_000, help="jobs and orders seeded")
    parser.add_argument("--deep", type=int, default=database.DEEP_ROWS, help="rows to a deep page")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per page")
    parser.add_argument("--warmup", type=int, default=20, help="requests per page first")
    return parser.parse_args(argv)


def seed(env: Mapping[str, str], args: argparse.Namespace) -> dict[str, str]:
    """The rows beyond the items, an admin, one tally; the pages to measure, by name."""
    app = create_app(load_settings(env))
    with app.app_context():
        member = users.create_user("Bench member", "bench-member@example.com", "x" * 16)
        users.create_user("Bench admin", ADMIN_EMAIL, env["BENCH_ADMIN_PASSWORD"], Role.ADMIN)
        step = 10 * 86400 / max(args.events, 1)  # ten days of events
        db.session.execute(text(SEED_EVENTS), {"count": args.events, "step": step})
        db.session.execute(text(SEED_JOBS), {"count": args.rows, "user_id": member.id})
        db.session.execute(text(SEED_ORDERS), {"count": args.rows, "user_id": member.id})
        db.session.commit()
        database.settle(env["DATABASE_URL"])
        activity.tally()
        pages = {"overview": "/console/"}
        with app.test_request_context(base_url="http://127.0.0.1/"):
            for endpoint, table, kind in LISTS:
                if endpoint not in app.view_functions:
                    continue
                name = endpoint.removeprefix("console.").removesuffix("_list")
                pages[f"{name}: first page"] = url_for(endpoint)
                deep = _deep_id(table, args.deep)
                if deep is not None:
                    pages[f"{name}: deep page"] = url_for(
                        endpoint, cursor=encode_cursor(kind, deep)
                    )
        db.engine.dispose()
    return pages


def _deep_id(table: str, deep: int) -> Any:
    """The id `deep` rows from the newest (the list's order), or the middle of a smaller
    table; None for a table of fewer than two rows."""
    count = db.session.scalar(text(f"SELECT count(*) FROM {table}")) or 0  # noqa: S608
    if count < 2:
        return None
    offset = min(deep, count // 2)
    statement = text(f"SELECT id FROM {table} ORDER BY id DESC OFFSET :o LIMIT 1")  # noqa: S608
    return db.session.scalar(statement, {"o": offset - 1})


def sign_in(client: httpx.Client, password: str) -> None:
    page = client.get("/console/sign-in")
    token = CSRF.search(page.text)
    assert token is not None, "the sign-in page has no CSRF token"
    answer = client.post(
        "/console/sign-in",
        data={"csrf_token": token.group(1), "email": ADMIN_EMAIL, "password": password},
    )
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in refused: {answer.status_code}")


def measure(client: httpx.Client, path: str, requests: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        client.get(path)
    times, statuses = [], set()
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        statuses.add(answer.status_code)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {
        "path": path,
        "p50_ms": round(cuts[49], 2),
        "p99_ms": round(cuts[98], 2),
        "statuses": sorted(statuses),
        "requests": requests,
    }


def aims(measured: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    found = [
        check(f"{name} p50 ms", page["p50_ms"], "<", P50_MS) for name, page in measured.items()
    ]
    for name, page in measured.items():
        if name.endswith(": deep page"):
            first = measured[name.replace(": deep page", ": first page")]
            ratio = page["p50_ms"] / first["p50_ms"]
            found.append(check(f"{name} / first page (p50)", ratio, "<=", DEEP_RATIO))
    found.append(
        check(
            "pages answered other than 200",
            sum(1 for page in measured.values() if page["statuses"] != [200]),
            "<=",
            0,
        )
    )
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    url = database_url()
    env = {
        **app_environment(url),
        "CONSOLE_COOKIE_SECURE": "false",
        "ACTIVITY_INTERVAL_SECONDS": "0",
        "BENCH_ADMIN_PASSWORD": secrets.token_urlsafe(16),
    }
    print(f"Preparing the database: {args.items:,} items, {args.events:,} events", flush=True)
    database.prepare(url, env, items=args.items)
    pages = seed(env, args)
    LOGS.mkdir(exist_ok=True)
    log = LOGS / f"{args.server}-console.log"
    measured: dict[str, dict[str, Any]] = {}
    with running(args.server, BACKOFFICE, env, log) as base, httpx.Client(base_url=base) as client:
        sign_in(client, env["BENCH_ADMIN_PASSWORD"])
        for name, path in pages.items():
            measured[name] = measure(client, path, args.requests, args.warmup)
            page = measured[name]
            print(
                f"  {name:<28} p50 {page['p50_ms']:>7.2f} ms  p99 {page['p99_ms']:>7.2f} ms "
                f"{page['statuses']}",
                flush=True,
            )
    found = aims(measured)
    for aim in found:
        print(
            f"  {'ok' if aim['ok'] else 'MISSED':<6} {aim['check']}: {aim['value']:.2f} "
            f"(aim {aim['target']})"
        )
    return {
        "server": settings(args.server),
        "machine": machine(),
        "database": {
            "items": args.items,
            "webhook_events": args.events,
            "jobs": args.rows,
            "orders": args.rows,
        },
        "method": "sequential GETs on the loopback, time to the last byte, after a warm-up",
        "pages": measured,
        "checks": found,
        "server_log": str(log),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(lambda: run(args), kind="console")


if __name__ == "__main__":
    sys.exit(main())
