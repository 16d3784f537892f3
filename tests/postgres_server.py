"""The PostgreSQL server TEST_DATABASE_URL names, as the suite uses it: a server to create
databases on, not a database that must already exist.

The suite makes a database of each test worker's own (conftest), so all it needs from the
URL is a server it can reach and a role that may create databases. The database the URL
names need not exist: the suite connects through the `postgres` maintenance database (or
the named one, or `template1`, whichever answers first). When none answers, or the role
may not create databases, `ServerUnusable` says so in one line, which the session prints
once instead of a thousand per-test errors.
"""

from __future__ import annotations

import functools

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from backoffice.config import normalize_database_url

#: Seconds to wait for the server before calling it unreachable (a dropped packet would
#: otherwise hang the session start for the operating system's TCP timeout).
CONNECT_TIMEOUT = 5


class ServerUnusable(Exception):
    """The server cannot serve the suite; the message is the one line to show."""


def shown(url: str) -> str:
    """`url` with its password hidden, to print."""
    return make_url(url).render_as_string(hide_password=True)


def _first_line(error: Exception) -> str:
    """The driver's message without the hints libpq adds on further lines."""
    cause = getattr(error, "orig", None) or error
    return str(cause).strip().splitlines()[0]


@functools.cache
def maintenance_url(url: str) -> URL:
    """A database on the server of `url` that this role can connect to, for CREATE and DROP
    DATABASE; `ServerUnusable` when there is none or the role may not create databases."""
    server = make_url(normalize_database_url(url))
    candidates = dict.fromkeys(["postgres", server.database or "postgres", "template1"])
    errors: list[str] = []
    for database in candidates:
        candidate = server.set(database=database)
        engine = create_engine(
            candidate,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": CONNECT_TIMEOUT},
        )
        try:
            with engine.connect() as connection:
                may_create = connection.execute(
                    text(
                        "SELECT rolcreatedb OR rolsuper, rolname FROM pg_roles"
                        " WHERE rolname = current_user"
                    )
                ).one()
        except Exception as error:  # any driver error: the next candidate, or the report
            errors.append(_first_line(error))
            continue
        finally:
            engine.dispose()
        if not may_create[0]:
            raise ServerUnusable(
                f"TEST_DATABASE_URL={shown(url)}: role {may_create[1]!r} may not create"
                " databases (the suite creates its own); grant it CREATEDB or use one that may"
            )
        return candidate
    raise ServerUnusable(f"TEST_DATABASE_URL={shown(url)}: PostgreSQL does not answer: {errors[0]}")
