"""Readiness: ask every dependency, for real, whether it can serve a request now."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from backoffice.extensions import db

log = structlog.get_logger(__name__)

VERSION = version("backoffice")


def check_database() -> None:
    db.session.execute(text("SELECT 1"))
    db.session.rollback()


CHECKS: dict[str, Callable[[], None]] = {"database": check_database}


def run_checks() -> dict[str, str]:
    """`{"database": "ok" | "unavailable", ...}`; failures are logged, not exposed."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except (SQLAlchemyError, OSError) as error:
            log.warning("readiness_check_failed", check=name, error=type(error).__name__)
            db.session.rollback()
            results[name] = "unavailable"
    return results
