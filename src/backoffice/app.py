"""The app class `create_app()` builds: APIFlask, with what Flask does on every request
made cheaper, and `OPTIONS` answered the way the rest of the API answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiflask import APIFlask
from flask import Response

from backoffice.conventions import no_content


class Backoffice(APIFlask):
    """The app class: APIFlask with a bodiless answer to `OPTIONS`, and hooks checked
    for `async def` once each rather than on every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synchronous: dict[Callable[..., Any], bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask asks this of every view and hook of every request (a dozen `inspect`
        calls per request, none of which can change its answer): keep the answer, per
        function. A `MethodView`'s method arrives bound, a new object each request: its
        answer is kept under the function it binds."""
        synchronous = self._synchronous.get(func)
        if synchronous is None:
            target = getattr(func, "__func__", func)
            synchronous = self._synchronous.get(target)
            if synchronous is None:
                synchronous = self._synchronous[target] = super().ensure_sync(func) is func
        return func if synchronous else super().ensure_sync(func)

    def make_default_options_response(self) -> Response:
        """204 with `Allow` (Flask's default is a 200 with an empty text/html body)."""
        response = super().make_default_options_response()
        allow = response.allow
        response = no_content()
        response.allow.update(allow)
        return response
