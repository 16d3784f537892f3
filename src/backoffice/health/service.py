"""Readiness: ask every dependency, for real, whether it can serve a request now."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

import structlog
from flask import current_app
from kombu.exceptions import KombuError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from backoffice.extensions import db
from backoffice.queue import celery_for

log = structlog.get_logger(__name__)

VERSION = version("backoffice")


def check_database() -> None:
    db.session.execute(text("SELECT 1"))
    db.session.rollback()


def check_queue() -> None:
    """The broker accepts a connection (the embedded one is a SQLite file)."""
    with celery_for(current_app).connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "queue": check_queue}


def run_checks() -> dict[str, str]:
    """`{"database": "ok" | "unavailable", ...}`; failures are logged, not exposed."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except (SQLAlchemyError, KombuError, OSError) as error:
            log.warning("readiness_check_failed", check=name, error=type(error).__name__)
            db.session.rollback()
            results[name] = "unavailable"
    return results
