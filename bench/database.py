"""The bench database: dropped, created, migrated and seeded with the app's own commands."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from backoffice import create_app
from backoffice.auth import service as auth
from backoffice.config import load_settings
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.pagination import encode_cursor
from backoffice.users import service as users
from bench import ROOT, tools

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/backoffice_bench"
SEED_ITEMS = 100_000
#: The deep page starts after this many of the newest rows.
DEEP_ROWS = 50_000
#: The member the fixtures create (bench/post_login_wrong.lua logs in as them, wrongly).
EMAIL = "bench@example.com"


@dataclass(frozen=True)
class Fixtures:
    """What the load needs from the seeded data, and what the database is."""

    item_id: str
    deep_cursor: str
    postgres: dict[str, str]
    #: A member's access token: the item endpoints are measured authenticated.
    access_token: str
    #: The same member's API key (scope `tools`), for `POST /api/process`.
    api_key: str


def recreate(url: str) -> None:
    """Drop and create the database `url` names, working from the server's `postgres` db."""
    target = make_url(url)
    engine = create_engine(
        target.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    name = engine.dialect.identifier_preparer.quote(str(target.database))
    try:
        with engine.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()


def flask(env: Mapping[str, str], *args: str, timeout: float) -> None:
    """Run a `flask` command of the app against the bench database."""
    command = [sys.executable, "-m", "flask", *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=timeout)  # noqa: S603


def settle(url: str) -> None:
    """After the bulk insert: statistics and visibility map, dirty pages flushed, so that
    autovacuum and the checkpointer do not run during the measurements."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("VACUUM ANALYZE"))
            connection.execute(text("CHECKPOINT"))
    finally:
        engine.dispose()


def prepare(url: str, env: Mapping[str, str], items: int = SEED_ITEMS) -> None:
    """A fresh database at `url`, migrated and seeded with `items` items."""
    recreate(url)
    flask(env, "db", "upgrade", timeout=60)
    flask(env, "seed", "--items", str(items), timeout=150)
    settle(url)


def fixtures(env: Mapping[str, str], deep_rows: int = DEEP_ROWS) -> Fixtures:
    """An existing item, and the cursor the API itself would give after it: the item
    `deep_rows` from the newest (the seed must hold at least that many)."""
    app = create_app(load_settings(env))
    with app.app_context():
        deep_id = db.session.scalars(
            select(Item.id).order_by(Item.id.desc()).offset(deep_rows - 1).limit(1)
        ).one()
        postgres = {
            setting: str(db.session.scalar(text(f"SHOW {setting}")))
            for setting in ("server_version", "synchronous_commit", "shared_buffers")
        }
        member = users.create_user("Bench", EMAIL, secrets.token_urlsafe(16))
        token = auth.issue_tokens(member)["access_token"]
        key = tools.process_key(member)
        found = Fixtures(str(deep_id), encode_cursor("items", deep_id), postgres, token, key)
        db.engine.dispose()
    return found
