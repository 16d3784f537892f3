"""Every use of a private or undocumented framework API, in one place.

Each one is here because no public API does the job. Each says what it relies on and
which test fails when an upgrade breaks it, so a dependency bump is checked by running
those tests, and the next person to find a public way deletes one function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apiflask.exceptions import HTTPError, _ValidationError
from flask import Flask, g
from flask.json.provider import JSONProvider
from flask_limiter import Limiter


def skip_app_wide_rate_limit_check(app: Flask, limiter: Limiter) -> None:
    """Keep only the per-view limits (chat): drop Flask-Limiter's app-wide check.

    Relies on: `Limiter.init_app` registering its bound method `_check_request_limit` as
    an app-wide `before_request` function (flask_limiter/_extension.py). That pass only
    evaluates default limits, which we have none of, yet costs a third of a /health.
    Breaks loudly: a renamed or unregistered method fails `create_app`, so every test.
    Breaks quietly if the decorator stops checking per-view limits itself; caught by
    tests/tools/test_chat_usage.py: test_past_the_limit_chat_is_429_with_retry_after_...
    (login and sign-up reserve their attempts through the limiter's storage directly).
    """
    app.before_request_funcs[None].remove(limiter._check_request_limit)


def skip_rate_limit_bookkeeping(app: Flask, limiter: Limiter) -> None:
    """Drop Flask-Limiter's app-wide `after_request` and `teardown_request` hooks.

    Relies on: `Limiter.init_app` registering `Limiter.__inject_headers` (name-mangled,
    through a partial) after requests and the bound `Limiter.__release_context` at
    teardown. The first writes the `X-RateLimit-*` headers, which are off
    (`RATELIMIT_HEADERS_ENABLED`), and settles `deduct_when` limits, which no limit here
    uses (attempts reserve their places themselves, `backoffice.attempts`); the second
    resets the limiter's state kept on the request's own context, which is discarded with
    it. Yet both looked that state up on every request (with the headers on, both stay).
    Breaks loudly: a renamed hook is not found and fails `create_app`, so every test.
    Caught if the chat limit needs them after an upgrade by tests/tools/test_chat_usage.py
    (the chat limit's 429 and `Retry-After`, a limit that resets between windows).
    """
    if app.config.get("RATELIMIT_HEADERS_ENABLED"):
        return
    after = app.after_request_funcs[None]
    injecting = [hook for hook in after if getattr(hook, "func", None) is _INJECT_HEADERS]
    teardown = app.teardown_request_funcs[None]
    releasing = [hook for hook in teardown if getattr(hook, "__func__", None) is _RELEASE]
    if len(injecting) != 1 or len(releasing) != 1:
        raise RuntimeError("Flask-Limiter's request hooks were not found: see its init_app")
    after.remove(injecting[0])
    teardown.remove(releasing[0])


#: What Flask-Limiter registers after each request (bound by a partial) and at teardown.
_INJECT_HEADERS = Limiter._Limiter__inject_headers  # type: ignore[attr-defined]
_RELEASE = Limiter._Limiter__release_context  # type: ignore[attr-defined]


def declared_view_spec(view: object) -> Mapping[str, Any]:
    """What APIFlask's `@bp.input`/`@bp.output`/`@bp.doc` recorded on a view function.

    Relies on: APIFlask's decorators storing their arguments in the function's `_spec`
    dict (apiflask/scaffold.py: `body`, `content_type`, ...), which is how we learn, before
    the view runs, whether it takes a JSON body. Caught by:
    tests/items/test_routes.py::test_create_with_another_content_type_is_415 and
    ::test_create_without_a_body_is_400.
    """
    spec: Mapping[str, Any] | None = getattr(view, "_spec", None)
    return spec or {}


def is_validation_error(error: HTTPError) -> bool:
    """Whether APIFlask raised `error` because the input failed its schema.

    Relies on: `apiflask.exceptions._ValidationError`, the private `HTTPError` subclass
    raised for schema failures (its `detail` is `{location: {field: [messages]}}`). Caught
    by tests/items/test_routes.py: test_list_with_bad_query_parameters_is_400_naming_them,
    test_create_with_invalid_fields_is_422_naming_them_and_stores_nothing.
    """
    return isinstance(error, _ValidationError)


def authenticated_user() -> Any:
    """The user that whichever Flask-HTTPAuth scheme guarded this view verified.

    Relies on: Flask-HTTPAuth keeping the verified user in `g.flask_httpauth_user` for
    every scheme (APIFlask's `auth.current_user` properties read it too, but each belongs
    to one scheme, and our views are guarded by three). Raises AttributeError outside a
    guarded view. Caught by: tests/users/test_routes.py::test_me_is_the_caller and
    tests/auth/test_tokens.py::test_refresh_issues_new_tokens_and_spends_the_refresh_token.
    """
    return g.flask_httpauth_user


def json_response_value(
    provider: JSONProvider, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The value `jsonify(*args, **kwargs)` serializes (one argument, a list, or a dict).

    Relies on: Flask's `JSONProvider._prepare_response_obj`, the argument rules every
    provider's `response()` shares. For `backoffice.json_provider.OrjsonProvider`. Caught
    by: tests/items/test_routes.py::test_get_returns_the_item_with_its_etag (any JSON answer).
    """
    return provider._prepare_response_obj(args, kwargs)
