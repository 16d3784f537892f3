"""Keyset pagination with opaque, signed cursors.

A page is `WHERE id < :last ORDER BY id DESC LIMIT :n+1` on the UUIDv7 primary key:
an index range scan that costs the same at row 10 and at row 10,000,000. The cursor
is the last id, signed with the app's secret so a client can neither forge nor
tamper with it; a bad one is a 400. (How a page is answered, with its `Link`: the
output path, `backoffice.output`.) Not sqlakeyset: one key column needs one `WHERE`, and its
typed multi-column bookmarks would need the same signing (docs/architecture/libraries.md).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import Field, StringConstraints
from sqlalchemy import Select, bindparam
from sqlalchemy.orm import InstrumentedAttribute

from backoffice.errors import BadRequest
from backoffice.prepared import is_prepared, prepared
from backoffice.readonly import read_rows

DEFAULT_LIMIT = 25
MAX_LIMIT = 100

Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
#: What `encode_cursor` makes (itsdangerous: base64url payload `.` base64url signature). Only
#: a cursor the server issued for the same list is accepted; any other is a 400.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"
Cursor = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=CURSOR_PATTERN),
    Field(
        description="`next_cursor` of the previous page, passed back exactly as given.",
        json_schema_extra={"format": "cursor"},
    ),
]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    data: list[T]
    next_cursor: str | None


def _serializer(kind: str) -> URLSafeSerializer:
    return _signing(current_app.config["SECRET_KEY"], kind)


@functools.lru_cache(maxsize=64)
def _signing(secret: str | bytes, kind: str) -> URLSafeSerializer:
    """One serializer per secret and kind, not one per page (it derives its key when made)."""
    return URLSafeSerializer(secret, salt=f"cursor:{kind}")


def encode_cursor(kind: str, last_id: uuid.UUID) -> str:
    return str(_serializer(kind).dumps(last_id.hex))


def decode_cursor(kind: str, cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=_serializer(kind).loads(cursor))
    except (BadSignature, ValueError, TypeError):
        raise BadRequest(
            "The cursor is not valid: pass back next_cursor exactly as it was given.",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        ) from None


def paginate(
    kind: str,
    query: Select[Any],
    key: InstrumentedAttribute[uuid.UUID],
    limit: int,
    cursor: str | None,
    fetch: Callable[[Select[Any], dict[str, Any]], Sequence[Any]] = read_rows,
) -> Page[Any]:
    """One page of `query`'s rows, newest first, resuming after `cursor`.

    Rows come from `fetch(statement, parameters)`: plain rows by default; a capability
    whose pages carry related objects (an order's lines) passes a fetch through the ORM
    session instead.
    """
    parameters: dict[str, Any] = {"limit": limit + 1}
    if cursor is not None:
        parameters["after"] = decode_cursor(kind, cursor)
    rows = fetch(_page_statement(query, key, cursor is not None), parameters)
    if len(rows) <= limit:
        return Page(list(rows), None)
    page = list(rows[:limit])
    return Page(page, encode_cursor(kind, getattr(page[-1], key.key)))


#: Page statements by the query they page through, for as long as that query lives: a
#: module-level query (the unfiltered item list) is built, and its cache key computed by
#: SQLAlchemy, once per process instead of on every request.
_PAGE_STATEMENTS: WeakKeyDictionary[Select[Any], dict[tuple[str, bool], Select[Any]]]
_PAGE_STATEMENTS = WeakKeyDictionary()


def _page_statement(
    query: Select[Any], key: InstrumentedAttribute[uuid.UUID], resumed: bool
) -> Select[Any]:
    """`query` ordered newest first, `:limit` rows, after `:after` when `resumed`."""
    built = _PAGE_STATEMENTS.setdefault(query, {})
    statement = built.get((key.key, resumed))
    if statement is None:
        paged = query.where(key < bindparam("after")) if resumed else query
        statement = paged.order_by(key.desc()).limit(bindparam("limit"))
        if is_prepared(query):  # built once, like the query it pages through
            prepared(statement)
        built[(key.key, resumed)] = statement
    return statement
