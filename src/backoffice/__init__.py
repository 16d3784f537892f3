"""Backoffice: a Flask REST API for a team's back office."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from sqlalchemy import event

from backoffice import activity, housekeeping, metrics, work
from backoffice.app import Backoffice
from backoffice.auth import cli as auth_cli
from backoffice.auth import revocations
from backoffice.auth import routes as auth
from backoffice.auth import service as auth_service
from backoffice.browsers import init_browsers
from backoffice.cli import register_commands
from backoffice.config import load_settings
from backoffice.console import bp as console_bp
from backoffice.conventions import init_conventions
from backoffice.database import render_item
from backoffice.dependencies import init_dependencies, redis_options, watch_database
from backoffice.error_reporting import init_error_reporting
from backoffice.errors import register_error_handlers
from backoffice.extensions import db, jwt, limiter
from backoffice.framework_internals import (
    skip_app_wide_rate_limit_check,
    skip_rate_limit_bookkeeping,
)
from backoffice.guards import Verifiers, init_guards
from backoffice.health import routes as health
from backoffice.health.service import VERSION
from backoffice.idempotency import service as idempotency_service
from backoffice.items import cli as items_cli
from backoffice.items import routes as items
from backoffice.items import service as items_service
from backoffice.jobs import routes as jobs
from backoffice.jobs import runners
from backoffice.jobs import service as jobs_service
from backoffice.jobs.models import JobType
from backoffice.json_provider import NoSessions, OrjsonProvider
from backoffice.observability import configure_logging, init_request_logging
from backoffice.openapi import init_openapi
from backoffice.orders import routes as orders
from backoffice.orders import service as orders_service
from backoffice.proxies import trust_proxies
from backoffice.queue import celery_init_app
from backoffice.schema_migrations import init_migrations
from backoffice.todos import routes as todos
from backoffice.tools import routes as tools
from backoffice.tools.capacity import init_chat_places
from backoffice.tools.llm import init_chat_gateway
from backoffice.users import cli as users_cli
from backoffice.users import routes as users
from backoffice.users import service as users_service
from backoffice.webhooks import routes as webhooks
from backoffice.webhooks import service as webhooks_service

#: Alembic revisions, checked in at the repository root beside src/.
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def create_app(config: Mapping[str, Any] | None = None) -> APIFlask:
    """Build the app from `config`, or from the environment when none is given."""
    settings = dict(config) if config is not None else load_settings()
    app = Backoffice(
        __name__,
        title="Backoffice API",
        static_folder=None,  # no app-wide static files
        version=VERSION,
        instance_path=str(Path(os.environ.get("INSTANCE_PATH", "instance")).resolve()),
    )
    app.json = OrjsonProvider(app)
    app.session_interface = NoSessions()
    app.config.update(settings)
    if settings.get("INSTANCE_CONFIG"):
        # The instance folder's: a relative name would be read beside this package, where
        # config.py is the settings' declaration itself.
        app.config.from_pyfile(str(Path(app.instance_path) / "config.py"), silent=True)
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{app.instance_path}/backoffice.db"
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(app.config)
    app.config["RATELIMIT_STORAGE_OPTIONS"] = _rate_limit_storage_options(app.config)

    tracing_on = bool(app.config["OTEL_EXPORTER_OTLP_ENDPOINT"])
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_JSON"], trace_ids=tracing_on)
    # Before the Celery app is made: the SDK hooks Celery's tasks as they are defined.
    init_error_reporting(app, release=VERSION)
    trust_proxies(app)

    db.init_app(app)
    init_dependencies(app)
    with app.app_context():
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
            event.listen(db.engine, "connect", _sqlite_pragmas)
        watch_database(app, db.engine)
        if tracing_on:
            _init_tracing(app)
    # Flask-Migrate (and Alembic) are imported when a migration is asked for, never to serve.
    init_migrations(app, db, MIGRATIONS, render_item=render_item, compare_type=True)
    jwt.init_app(app)
    limiter.init_app(app)
    # Only views that declare a limit (chat) are limited, and their decorator checks it.
    skip_app_wide_rate_limit_check(app, limiter)
    skip_rate_limit_bookkeeping(app, limiter)
    auth_service.init_tokens(app)
    init_chat_gateway(app)
    init_chat_places(app)
    init_request_logging(app)
    metrics.init_app(app)
    init_conventions(app)
    init_browsers(app)
    init_openapi(app)
    register_error_handlers(app)
    _register_blueprints(app)
    _wire_registries(app)
    celery_init_app(app)
    register_commands(app, items_cli.seed_command, users_cli.users_cli, auth_cli.auth_cli)
    return app


def _init_tracing(app: APIFlask) -> None:
    # Imported only when OTEL_EXPORTER_OTLP_ENDPOINT is set: otherwise nothing of
    # OpenTelemetry is loaded, and requests pay nothing for it.
    from backoffice import tracing

    tracing.init_tracing(app, db.engine)


def _register_blueprints(app: APIFlask) -> None:
    prefix = app.config["API_PREFIX"]
    app.register_blueprint(health.bp)
    app.register_blueprint(console_bp)  # at /console, whatever API_PREFIX is
    app.register_blueprint(health.readiness_bp, url_prefix=prefix)
    app.register_blueprint(users.bp, url_prefix=prefix)
    app.register_blueprint(items.bp, url_prefix=prefix)
    app.register_blueprint(orders.bp, url_prefix=prefix)
    app.register_blueprint(todos.bp, url_prefix=prefix)
    app.register_blueprint(jobs.bp, url_prefix=prefix)
    app.register_blueprint(webhooks.bp, url_prefix=prefix)
    app.register_blueprint(tools.bp, url_prefix=prefix)
    # Last: APIFlask warns about a duplicate security scheme when a bearer-only view is
    # seen before the first view that accepts bearer or API key (MultiAuth).
    app.register_blueprint(auth.bp, url_prefix=prefix)


def _wire_registries(app: APIFlask) -> None:
    """What each kind of background work does, in one table the web process and the
    worker share: a job type without a runner fails here, an event type without a
    handler ends `ignored`. What retention removes, and when: a work queue without a
    retention fails here. Who holds items (open orders), asked before a delete; how
    credentials are verified; who must hear of changes to a user (orders cancel a
    deleted user's pending ones, auth ends a deactivated user's keys and forgets what it
    cached of a changed one). And what `/metrics` reads from the database at scrape time."""
    jobs_service.init_runners(
        app,
        {
            JobType.TEXT_ANALYSIS: runners.text_analysis,
            JobType.INVENTORY_REPORT: runners.inventory_report,
            JobType.SENTIMENT: runners.sentiment_batch,
            JobType.LANGUAGE: runners.language_batch,
        },
    )
    webhooks_service.init_handlers(app, {"payment_success": orders_service.handle_payment})
    housekeeping.init_retention(
        app,
        [
            idempotency_service.RETENTION,
            revocations.RETENTION,
            jobs_service.RETENTION,
            webhooks_service.RETENTION,
            webhooks_service.FAILED_RETENTION,
            activity.RETENTION,
        ],
    )
    items_service.init_holders(app, [orders_service.open_orders_holding])
    # Auth depends on users, never the reverse: users announce, auth (and orders) listen.
    init_guards(
        app,
        Verifiers(
            access_token=auth_service.principal_from_token,
            refresh_token=functools.partial(auth_service.principal_from_token, kind="refresh"),
            api_key=auth_service.principal_from_api_key,
        ),
    )
    users_service.init_listeners(
        app,
        users_service.UserListeners(
            deleted=[orders_service.cancel_orders_of],
            deactivated=[auth_service.end_api_keys],
            changed=[auth_service.forget_user],
        ),
    )
    activity.init_activity(
        app,
        [
            webhooks_service.OUTCOMES,
            orders_service.ORDER_TRANSITIONS,
            jobs_service.DURATIONS,
        ],
        counters=[activity.Counter("http_requests", metrics.requests_by_class)],
        snapshots=[activity.Snapshot(work.queue_snapshot)],
    )
    metrics.add_reader(app, "work_queues", work.queue_metrics)
    metrics.add_reader(
        app, "retention", lambda now: [metrics.retention_overdue(housekeeping.overdue_ages(now))]
    )


def _engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    # Never log bound parameters (a login's email, a whole webhook payload) with an error.
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return {"connect_args": {"timeout": 15}, "hide_parameters": True}
    return {
        "pool_size": config["DB_POOL_SIZE"],
        "max_overflow": config["DB_POOL_SIZE"],
        "pool_recycle": 1800,
        "connect_args": {"connect_timeout": 5},
        "hide_parameters": True,
    }


def _rate_limit_storage_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """A limit store that does not answer raises `limits`' StorageError (a 503, never an
    unthrottled login), and a Redis one fails fast (`dependencies.redis_options`)."""
    options: dict[str, Any] = {"wrap_exceptions": True}
    if str(config["RATELIMIT_STORAGE_URI"]).startswith(("redis", "valkey")):
        options.update(redis_options())
    return {**options, **config.get("RATELIMIT_STORAGE_OPTIONS", {})}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLite: enforce foreign keys, and let readers and a writer work side by side (WAL)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
