"""`flask db` and Flask-Migrate's functions (`flask_migrate.upgrade()`), bound to the app
as `Migrate.init_app` binds them, but imported only when a migration is asked for.

Flask-Migrate brings Alembic, Mako and Pygments: about a tenth of the app's import time,
which the server, its workers and the Celery workers paid at every start and never used.
Now `app.extensions["migrate"]` and `flask db` stand in for them until first used; then
`Migrate.init_app` runs, puts its own in their place, and they pass every use on.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy

#: The command group's name, as Flask-Migrate names it by default.
COMMAND = "db"


class DeferredMigrations:
    """What `app.extensions["migrate"]` holds until a migration is asked for: reading any
    attribute binds Flask-Migrate to the app and reads it from what that put there."""

    def __init__(self, app: Flask, db: SQLAlchemy, directory: Path, **alembic: Any) -> None:
        self._app = app
        self._db = db
        self._directory = directory
        self._alembic = alembic

    @cached_property
    def bound(self) -> Any:
        """Flask-Migrate's own entry (its `_MigrateConfig`), once bound to the app."""
        # Alembic logs each of its plugins as it is imported: once before our logging was
        # set up, unseen; now after, a dozen lines ahead of every `flask db` command's.
        plugins = logging.getLogger("alembic.runtime.plugins")
        level = plugins.level
        plugins.setLevel(logging.WARNING)
        try:
            from flask_migrate import Migrate
        finally:
            plugins.setLevel(level)
        Migrate(command=COMMAND).init_app(
            self._app, self._db, directory=str(self._directory), **self._alembic
        )
        return self._app.extensions["migrate"]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.bound, name)


class DeferredCommands(click.Group):
    """`flask db`: Flask-Migrate's command group, imported when the command line reaches
    it (the `flask` command has pushed the app's context by then); its own group then
    parses the arguments, options and `--help` included, and runs."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        bound(app)  # Migrate.init_app has put its own group in our place
        group: click.Command = app.cli.commands[COMMAND]
        return group.make_context(info_name, args, parent=parent, **extra)


def bound(app: Flask) -> Any:
    """Flask-Migrate's entry in `app.extensions`, bound to `app` first if it was not."""
    entry = app.extensions["migrate"]
    return entry.bound if isinstance(entry, DeferredMigrations) else entry


def init_migrations(app: Flask, db: SQLAlchemy, directory: Path, **alembic: Any) -> None:
    """What `Migrate(app, db, directory, **alembic)` would set up, deferred."""
    app.extensions["migrate"] = DeferredMigrations(app, db, directory, **alembic)
    app.cli.add_command(DeferredCommands(COMMAND, help="Perform database migrations."))
