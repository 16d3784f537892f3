"""The one output path: what a view returns, written as its declared schema says.

Every view declares its answer with `@bp.output(Schema)` on `Blueprint` (below), and
returns what its service gave it: a record (a `Row`, a model instance, a dataclass or a
dict: anything whose attributes or keys are the schema's fields), or a `Page` of records
for a list schema (`data` and `next_cursor`), optionally with a status and headers. The
output path then writes it, and no view chooses a serialiser:

- the record's values for the schema's fields only (a row may carry more, `version`
  say), nested schemas (an order's lines) alike, field defaults for what it lacks;
- with orjson, which writes UUIDs, enums and UTC datetimes (`+00:00`, microseconds when
  there are any) as the schemas' own serialisers do. Validating and serialising through
  pydantic was a tenth of an item read's CPU, to copy columns that are already what the
  schema says; tests/test_output.py holds the two ways to the same bytes for every output
  schema the API declares;
- a page as `{"data": [...], "next_cursor": ...}` with its `Link: <...>; rel="next"`;
- a `Response` (a 304, a stream, a CSV) as it is.

`@bp.output` still documents the answer (APIFlask records the schema for the OpenAPI
document and passes the written `Response` through untouched).
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Union
from urllib.parse import urlencode

import orjson
from apiflask import APIBlueprint
from flask import Response, current_app, request
from pydantic import BaseModel

from backoffice.pagination import Page

#: A field the record must have (it has no default).
_REQUIRED = object()


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """`body` as JSON (orjson): every JSON answer, `jsonify`'s included, is made here."""
    return current_app.response_class(
        orjson.dumps(body), status, headers, mimetype="application/json"
    )


def link_header(next_cursor: str | None) -> dict[str, str]:
    """`Link: <...>; rel="next"`: the same URL and filters with the cursor advanced."""
    if next_cursor is None:
        return {}
    args = request.args.to_dict()
    args["cursor"] = next_cursor
    return {"Link": f'<{request.base_url}?{urlencode(args)}>; rel="next"'}


@dataclass(frozen=True)
class _Field:
    name: str
    default: Any
    #: How to write a nested schema's record (None: the value as it is).
    nested: Writer | None
    #: A list of nested records.
    many: bool


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The schema a field nests, if any, and whether it is a list of them."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for argument in typing.get_args(annotation):
            if argument is not type(None):
                return _nested(argument)
    if origin is list:
        (item,) = typing.get_args(annotation)
        schema, _ = _nested(item)
        return schema, schema is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


class Writer:
    """How one schema's records are written: its fields, once, in order."""

    def __init__(self, schema: type[BaseModel]) -> None:
        self.schema = schema
        fields = []
        for name, info in schema.model_fields.items():
            nested, many = _nested(info.annotation)
            default = _REQUIRED if info.is_required() else info.get_default()
            fields.append(_Field(name, default, writer(nested) if nested else None, many))
        self.fields = tuple(fields)
        self.names = tuple(field.name for field in fields)
        self.pages = {field.name for field in fields} == {"data", "next_cursor"}
        self.items = next((f.nested for f in fields if f.name == "data"), None)
        #: Every field's value in one C call, for a flat schema's complete records (a
        #: row of the service's columns): a page of 25 rows was 150 `getattr` calls.
        self._flat = (
            attrgetter(*self.names)
            if len(fields) > 1 and not any(f.nested for f in fields)
            else None
        )

    def record(self, record: Any) -> dict[str, Any]:
        """The record's values for the schema's fields."""
        if self._flat is not None and type(record) is not dict:
            try:
                return dict(zip(self.names, self._flat(record), strict=True))
            except AttributeError:
                pass  # a record without some fields: their defaults, below
        values = record if isinstance(record, Mapping) else None
        written: dict[str, Any] = {}
        for field in self.fields:
            if values is not None:
                value = values.get(field.name, field.default)
            else:
                value = getattr(record, field.name, field.default)
            if value is _REQUIRED:
                raise TypeError(f"{type(record).__name__} has no {field.name!r} for {self.schema}")
            if field.nested is not None and value is not None:
                value = (
                    [field.nested.record(v) for v in value]
                    if field.many
                    else (field.nested.record(value))
                )
            written[field.name] = value
        return written

    def answer(self, result: Any, status: int) -> Response:
        """The view's result (a record or a page, maybe with a status and headers)."""
        if isinstance(result, Response):
            return result
        headers: dict[str, str] = {}
        if isinstance(result, tuple):
            result, *rest = result
            for extra in rest:
                if isinstance(extra, int):
                    status = extra
                else:
                    headers.update(extra)
        if isinstance(result, Page) and self.pages and self.items is not None:
            body = {
                "data": [self.items.record(record) for record in result.data],
                "next_cursor": result.next_cursor,
            }
            headers.update(link_header(result.next_cursor))
        else:
            body = self.record(result)
        return json_answer(body, status, headers)


@functools.cache
def writer(schema: type[BaseModel]) -> Writer:
    return Writer(schema)


class Blueprint(APIBlueprint):
    """APIFlask's blueprint, whose `@bp.output(Schema)` also writes the answer (above)."""

    def output(  # type: ignore[override]
        self, schema: type[BaseModel], status_code: int = 200, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        document = super().output(schema, status_code, **kwargs)
        write = writer(schema)

        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def written(*args: Any, **view_kwargs: Any) -> Response:
                return write.answer(view(*args, **view_kwargs), status_code)

            return document(written)

        return decorate
