"""`uv run python -m bench.profile`: the CPU one request costs, where it goes, and a count
that does not move with the machine's load.

The app is built in this process with the bench's production settings against PostgreSQL
and its WSGI callable is called directly, no server and no socket in front of it. For each
scenario the requests' environs are built first; after a warm-up, N requests are timed with
`time.process_time()` (this process's CPU: Flask, SQLAlchemy, psycopg, PyJWT, the Redis
client...), then the same N run again under cProfile for the breakdown and the call count.
Every answer's status is checked: a scenario that answers errors stops the run.

The count is cProfile's number of function calls (Python and C) per request: a given code
path makes the same calls whatever the machine is doing, so a 10% regression in the work
done shows in one run. Hardware counters (`perf stat -e instructions`) are not available in
this VM and callgrind takes minutes to import the app.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.engine import make_url
from werkzeug.test import EnvironBuilder

from backoffice import create_app, work
from backoffice.config import load_settings
from backoffice.items import service as items_service
from backoffice.webhooks.signatures import sign
from bench import database, webhooks
from bench.__main__ import BROKER_URL, app_environment
from bench.report import RESULTS, machine

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_profile"
#: Enough rows for the planner to use the indexes; the read and the first page do not
#: depend on the table's size (keyset pagination), and seeding stays quick.
SEED_ITEMS = 10_000
BASE_URL = "http://127.0.0.1"
#: Requests per batch of the work sender (`work.Sender`), sent in this thread so that the
#: count includes it: under `make bench` a batch holds whatever arrived while the previous
#: one was being sent (see docs/benchmarks.md).
SEND_EVERY = 10
#: Requests run before the measured ones (statement caches, pool, loggers).
MAX_WARMUP = 200
ITEM_BODY = b'{"name": "Bench item", "quantity": 1}'
#: Units of the order scenario's item: more than any run orders.
ORDER_STOCK = 100_000_000
#: A login storm's request: the member's email, a wrong password.
WRONG_LOGIN = {"email": database.EMAIL, "password": "not-the-password"}
#: The profile's login limit: the window fills in the warm-up and never rolls over during
#: a run (a new window would check five passwords with argon2 in the measured requests).
LOGIN_LIMIT = "5 per year"
#: The token-state cache's maximum age, its longest: no entry ages out during a run. A
#: re-read every 5 s (the default) would move the call count with the run's length and
#: the machine's load; what it costs is measured by `bench.auth_cache`.
CACHE_MAX_AGE = "300"

#: (key, label, top-level packages): a function's own time goes to the component its
#: code lives in. Code elsewhere (the standard library, builtins, other packages) is
#: charged to its callers, in proportion to the time each call took.
COMPONENTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "database",
        "database (SQLAlchemy, psycopg)",
        ("sqlalchemy", "flask_sqlalchemy", "psycopg", "psycopg_binary"),
    ),
    ("jwt", "JWT (PyJWT, flask-jwt-extended)", ("jwt", "flask_jwt_extended")),
    ("redis", "Redis client", ("redis", "hiredis")),
    ("queue", "queue hand-off (Celery, kombu)", ("celery", "kombu", "amqp", "vine", "billiard")),
    (
        "schemas",
        "schemas (pydantic, APIFlask)",
        ("pydantic", "pydantic_core", "apiflask", "annotated_types", "marshmallow", "apispec"),
    ),
    (
        "framework",
        "framework (Flask, Werkzeug)",
        (
            "flask",
            "werkzeug",
            "blinker",
            "itsdangerous",
            "markupsafe",
            "flask_cors",
            "flask_limiter",
            "limits",
        ),
    ),
    ("logging", "logging (structlog, logging)", ("structlog", "logging")),
    ("json", "JSON (orjson, json)", ("orjson", "json", "_json")),
    ("ours", "our code (backoffice)", ("backoffice",)),
    ("other", "other (this harness, the profiler)", ()),
)
LABELS = {key: label for key, label, _packages in COMPONENTS}


class UnexpectedAnswer(RuntimeError):
    """A scenario answered something else than its success status: its timing is void."""


@dataclass(frozen=True)
class Target:
    """What the requests need from the prepared data and settings."""

    item_id: str
    access_token: str
    webhook_source: str
    webhook_secret: str
    #: An item with stock enough for every order the profile places (`stock_up`).
    stock_item_id: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    status: int
    #: A fresh environ for one request (a new body stream, a new delivery id...).
    environ: Callable[[], dict[str, Any]]
    #: Other answers the warm-up may get (the failed logins that fill the window).
    warm_up_statuses: frozenset[int] = frozenset()


@dataclass
class Result:
    scenario: str
    label: str
    requests: int
    us_per_request: float
    calls_per_request: float
    #: The measured µs per request, split by component (they sum to `us_per_request`).
    components: dict[str, float]
    #: CPU µs per request under cProfile: the profiler's own overhead included.
    profiled_us_per_request: float
    #: Wall-clock µs per profiled request not spent on this process's CPU: waiting for
    #: PostgreSQL and Redis (taken out of the functions that wait on a socket), or for a
    #: core on a busy machine.
    waiting_us_per_request: float
    top: list[dict[str, Any]] = field(default_factory=list)


def scenarios(target: Target) -> dict[str, Scenario]:
    """By name: a member's item read, create and first list page, and an order of one line;
    a signed delivery; a login refused by the throttle (a storm's request)."""
    auth = {"Authorization": f"Bearer {target.access_token}"}

    def request(method: str, path: str, **options: Any) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            builder = EnvironBuilder(path, BASE_URL, method=method, **options)
            try:
                return builder.get_environ()
            finally:
                builder.close()

        return build

    def delivery() -> dict[str, Any]:
        msg_id, now = f"msg_{uuid.uuid4().hex}", int(time.time())
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(now),
            "webhook-signature": sign(target.webhook_secret, msg_id, now, webhooks.BODY),
        }
        path = f"/api/webhooks/{target.webhook_source}"
        return request(
            "POST", path, headers=headers, data=webhooks.BODY, content_type="application/json"
        )()

    items = "/api/items"
    found = (
        Scenario(
            "item",
            "GET /api/items/<id>",
            200,
            request("GET", f"{items}/{target.item_id}", headers=auth),
        ),
        Scenario(
            "create",
            "POST /api/items",
            201,
            request("POST", items, headers=auth, data=ITEM_BODY, content_type="application/json"),
        ),
        Scenario(
            "list",
            "GET /api/items?limit=20",
            200,
            request("GET", f"{items}?limit=20", headers=auth),
        ),
        Scenario(
            "order",
            "POST /api/orders (one line)",
            201,
            request(
                "POST",
                "/api/orders",
                headers=auth,
                json={"lines": [{"item_id": target.stock_item_id, "quantity": 1}]},
            ),
        ),
        Scenario("webhook", f"POST /api/webhooks/{target.webhook_source} (signed)", 201, delivery),
        Scenario(
            "refused",
            "POST /api/auth/token (throttled: 429)",
            429,
            request("POST", "/api/auth/token", json=WRONG_LOGIN),
            warm_up_statuses=frozenset({401}),
        ),
    )
    return {scenario.name: scenario for scenario in found}


# --- calling the app ------------------------------------------------------------------


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def call(app: WSGIApp, environ: dict[str, Any]) -> tuple[int, bytes]:
    """One request as a WSGI server makes it: the status and the whole body."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[..., None]:
        statuses.append(status)
        return lambda data: None

    answer = app(environ, start_response)
    try:
        body = b"".join(answer)
    finally:
        close = getattr(answer, "close", None)
        if close is not None:
            close()
    return int(statuses[-1].split(" ", 1)[0]), body


def run(
    app: WSGIApp,
    scenario: Scenario,
    environs: Sequence[dict[str, Any]],
    also: frozenset[int] = frozenset(),
    sender: work.Sender | None = None,
    send_every: int = 1,
) -> None:
    """Call `app` with each environ; `sender` (the app's, without a thread) sends what the
    requests accepted every `send_every` requests and at the end, in this thread, so its
    CPU is timed and its calls counted with the requests'."""
    for number, environ in enumerate(environs, 1):
        status, body = call(app, environ)
        if status != scenario.status and status not in also:
            raise UnexpectedAnswer(
                f"{scenario.label} answered {status}, not {scenario.status}: {body[:300]!r}"
            )
        if sender is not None and number % send_every == 0:
            sender.send_pending()
    if sender is not None:
        sender.send_pending()


# --- the breakdown --------------------------------------------------------------------


def _places(package: str) -> list[str]:
    """Path prefixes of `package`'s code: its directories, or a single-file module's path."""
    module = sys.modules.get(package)
    if module is not None:  # some (kombu) replace themselves in sys.modules, spec-less
        directories, origin = getattr(module, "__path__", None), getattr(module, "__file__", None)
    else:
        spec = find_spec(package)
        if spec is None:
            return []  # not installed
        directories, origin = spec.submodule_search_locations, spec.origin
    if directories:
        return [f"{directory}{os.sep}" for directory in directories]
    return [origin] if origin else []


@cache
def _package_roots() -> tuple[tuple[str, str], ...]:
    """(path prefix, component) for every listed package that is installed."""
    roots = [
        (place, key)
        for key, _label, packages in COMPONENTS
        for package in packages
        for place in _places(package)
    ]
    return tuple(sorted(roots, key=lambda root: -len(root[0])))


_PACKAGES = {package: key for key, _label, packages in COMPONENTS for package in packages}
#: How cProfile names C functions: `<built-in method orjson.dumps>`,
#: `<method 'execute' of 'psycopg_binary._psycopg.PGconn' objects>`.
_C_MODULE = re.compile(r"<built-in method ([\w.]+)\.\w+>|of '([\w.]+)' objects>")

Function = tuple[str, int, str]


def located(function: Function) -> str | None:
    """The component `function`'s code belongs to, or None if it is charged to its callers."""
    filename, _line, name = function
    if filename == "~":
        match = _C_MODULE.search(name)
        module = (match.group(1) or match.group(2)) if match else ""
        return _PACKAGES.get(module.split(".", 1)[0])
    for root, key in _package_roots():
        if filename.startswith(root):
            return key
    return None


#: Where this process blocks on a socket (PostgreSQL, Redis): psycopg's wait loop (its C
#: part is not a call cProfile sees), a socket read, a poll.
_WAITS = re.compile(
    r"/psycopg/(connection|waiting)\.py:\d+\(wait|'recv(_into)?' of '_socket\.socket'"
    r"|'poll' of 'select\.|select\.select>"
)


def waits(function: Function) -> bool:
    return bool(_WAITS.search("{}:{}({})".format(*function)))


def attribute(
    stats: Mapping[Function, Any], overhead: float = 0.0, waiting: float = 0.0
) -> dict[str, float]:
    """Every function's own time (tottime), summed by component.

    The profile's clock is a wall clock: `overhead` (the profiler's own time per call) is
    taken out of every function, and `waiting` (time off the CPU) out of the functions
    that wait on a socket, as far as they hold it.
    """
    shares: dict[Function, dict[str, float]] = {}
    visiting: set[Function] = set()

    def share(function: Function) -> dict[str, float] | None:
        if function in shares:
            return shares[function]
        if function in visiting:
            return None  # a cycle among charged-to-caller functions: that edge is left out
        key = located(function)
        if key is not None:
            shares[function] = {key: 1.0}
            return shares[function]
        visiting.add(function)
        mixed: dict[str, float] = {}
        edges = stats[function][4]
        weights = {caller: edge[2] or edge[0] for caller, edge in edges.items()}
        total = sum(weights.values())
        for caller, weight in weights.items():
            found = share(caller) if total else None
            for component, fraction in (found or {}).items():
                mixed[component] = mixed.get(component, 0.0) + fraction * weight / total
        visiting.discard(function)
        charged = sum(mixed.values())
        shares[function] = {k: v / charged for k, v in mixed.items()} if charged else {"other": 1.0}
        return shares[function]

    own = {function: max(0.0, row[2] - row[1] * overhead) for function, row in stats.items()}
    blocked = sum(spent for function, spent in own.items() if waits(function))
    kept = max(0.0, 1.0 - waiting / blocked) if blocked else 1.0
    seconds = {key: 0.0 for key, _label, _packages in COMPONENTS}
    for function, mine in own.items():
        spent = mine * kept if waits(function) else mine
        for component, fraction in (share(function) or {"other": 1.0}).items():
            seconds[component] += spent * fraction
    return seconds


def _top(stats: Mapping[Function, Any], requests: int, count: int = 15) -> list[dict[str, Any]]:
    """The functions with the most own time, as cProfile saw it (wall clock, uncorrected)."""
    ranked = sorted(stats.items(), key=lambda item: -item[1][2])[:count]
    return [
        {
            "function": "{}:{}({})".format(*function),
            "component": located(function),
            "calls_per_request": nc / requests,
            "profiled_own_us_per_request": own * 1e6 / requests,
        }
        for function, (_cc, nc, own, _cumulative, _callers) in ranked
    ]


# --- one scenario ---------------------------------------------------------------------


def measure(
    app: WSGIApp,
    scenario: Scenario,
    requests: int,
    sender: work.Sender | None = None,
    send_every: int = SEND_EVERY,
) -> Result:
    """Warm up, time `requests` requests (CPU), then profile as many again."""
    warm_up = [scenario.environ() for _ in range(min(requests, MAX_WARMUP))]
    run(app, scenario, warm_up, scenario.warm_up_statuses, sender, send_every)

    timed = [scenario.environ() for _ in range(requests)]
    gc.collect()
    started = time.process_time()
    run(app, scenario, timed, sender=sender, send_every=send_every)
    cpu = time.process_time() - started

    profiled = [scenario.environ() for _ in range(requests)]
    gc.collect()
    # cProfile's own clock (cheap); a CPU clock for a timer would be a system call per event,
    # an overhead ten times the work that no per-call correction takes out reliably.
    profiler = cProfile.Profile()
    started, wall = time.process_time(), time.perf_counter()
    profiler.enable()
    run(app, scenario, profiled, sender=sender, send_every=send_every)
    profiler.disable()
    profiled_cpu, profiled_wall = time.process_time() - started, time.perf_counter() - wall
    stats = pstats.Stats(profiler)
    table: dict[Function, Any] = stats.stats  # type: ignore[attr-defined]
    calls: int = stats.total_calls  # type: ignore[attr-defined]
    # The profiler's CPU per call event, taken out of every function's own time before
    # the shares are taken (without it, components of many small calls look too big).
    seconds = attribute(
        table,
        overhead=max(0.0, profiled_cpu - cpu) / calls,
        waiting=max(0.0, profiled_wall - profiled_cpu),
    )
    spent = sum(seconds.values())
    us_per_request = cpu * 1e6 / requests
    return Result(
        scenario=scenario.name,
        label=scenario.label,
        requests=requests,
        us_per_request=us_per_request,
        calls_per_request=calls / requests,
        components={k: us_per_request * v / spent for k, v in seconds.items()},
        profiled_us_per_request=profiled_cpu * 1e6 / requests,
        waiting_us_per_request=max(0.0, profiled_wall - profiled_cpu) * 1e6 / requests,
        top=_top(table, requests),
    )


# --- the command ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="requests timed, then profiled")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=("item", "create", "list", "order", "webhook", "refused"),
        help="only this one (repeatable; default: all six)",
    )
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument(
        "--send-every",
        type=int,
        default=SEND_EVERY,
        help="requests per batch the work sender sends (what a busy server's batches hold)",
    )
    args = parser.parse_args(argv)
    if args.send_every < 1:
        parser.error("--send-every must be at least 1")
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    return args


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """The request log lines go to /dev/null (still written, so still paid for)."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def table(results: Sequence[Result]) -> str:
    """Markdown: one column per scenario, µs of CPU per request by component."""
    lines = [
        "| µs CPU per request | " + " | ".join(r.label for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for key, label, _packages in COMPONENTS:
        lines.append(
            f"| {label} | " + " | ".join(f"{r.components[key]:,.0f}" for r in results) + " |"
        )
    lines.append(
        "| **total** | " + " | ".join(f"**{r.us_per_request:,.0f}**" for r in results) + " |"
    )
    lines.append(
        "| function calls per request | "
        + " | ".join(f"{r.calls_per_request:,.1f}" for r in results)
        + " |"
    )
    return "\n".join(lines)


def prepare(url: str, env: Mapping[str, str]) -> Target:
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"Preparing {shown}: migrations, {SEED_ITEMS:,} items", flush=True)
    database.prepare(url, env, items=SEED_ITEMS)
    with redis.Redis.from_url(BROKER_URL) as broker:
        broker.flushdb()  # the bench's broker: messages nobody consumes
    found = database.fixtures(env, deep_rows=SEED_ITEMS // 2)
    return Target(found.item_id, found.access_token, webhooks.SOURCE, webhooks.SECRET)


def stock_up(app: Any, target: Target) -> Target:
    """An item no run of orders can empty, for the order scenario."""
    with app.app_context():
        item = items_service.create_item("Profile stock", quantity=ORDER_STOCK)
    return replace(target, stock_item_id=str(item.id))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get("PROFILE_DATABASE_URL", DEFAULT_URL)
    env = {
        **app_environment(url),
        "LOGIN_RATE_LIMIT": LOGIN_LIMIT,
        "AUTH_CACHE_MAX_AGE": CACHE_MAX_AGE,
    }
    target = prepare(url, env)
    app = create_app(load_settings(env))
    target = stock_up(app, target)
    sender = work.install_sender(app, work.Sender(app, background=False))
    chosen = scenarios(target)
    results = []
    for name in args.scenario or list(chosen):
        print(
            f"  {chosen[name].label}: {args.requests:,} requests, timed then profiled", flush=True
        )
        with quiet_stdout():
            results.append(measure(app, chosen[name], args.requests, sender, args.send_every))
    load = os.getloadavg()
    print(f"\n{table(results)}\n\nload average during the run: {load[0]:.1f}", flush=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.json or RESULTS / f"profile-{stamp}.json"
    document = {
        "timestamp": stamp,
        "database": {
            "url": make_url(url).render_as_string(hide_password=True),
            "items": SEED_ITEMS,
        },
        "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
        "send_every": args.send_every,
        "machine": machine(),
        "loadavg": load,
        "components": LABELS,
        "results": [asdict(result) for result in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"Results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
