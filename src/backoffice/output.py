"""Answers written from rows with orjson, without building the output model.

`@bp.output(Schema)` validates and serializes every answer through pydantic: on the item
read that was a tenth of its CPU, to copy columns that are already what the schema says.
Where a schema's fields are plain columns (UUIDs, text, numbers, UTC timestamps), a view
answers `json_answer(fields_of(row, Schema))` instead; `@bp.output` still documents the
shape (APIFlask passes a `Response` through untouched). orjson writes a UTC datetime as
`isoformat()` does (`+00:00`, microseconds when there are any), as `schemas.Timestamp`
does; tests/test_output.py holds the two ways to the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import orjson
from flask import Response, current_app
from pydantic import BaseModel
from sqlalchemy import Row


@cache
def field_names(schema: type[BaseModel]) -> tuple[str, ...]:
    return tuple(schema.model_fields)


def fields_of(row: Row[Any], schema: type[BaseModel]) -> dict[str, Any]:
    """The row's values for the schema's fields (a row may carry more, e.g. `version`)."""
    values = row._mapping
    return {name: values[name] for name in field_names(schema)}


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """`body` as JSON (orjson): every JSON answer, `jsonify`'s included, is made here."""
    return current_app.response_class(
        orjson.dumps(body), status, headers, mimetype="application/json"
    )
