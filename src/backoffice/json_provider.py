"""How responses are made: orjson for JSON, and no cookie sessions (a stateless API)."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, Request
from flask.json.provider import JSONProvider
from flask.sessions import SessionInterface, SessionMixin

from backoffice.framework_internals import json_response_value
from backoffice.output import json_answer


class OrjsonProvider(JSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Any:
        return json_answer(json_response_value(self, args, kwargs))


class NoSessions(SessionInterface):
    """The API authenticates every request itself; it never reads or sets a session cookie.

    Flask would otherwise decode a signed session on every request because SECRET_KEY
    is set.
    """

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: SessionMixin, response: Any) -> None:
        return None
