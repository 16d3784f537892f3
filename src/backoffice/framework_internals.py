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


def skip_rate_limit_headers(app: Flask, limiter: Limiter) -> None:
    """Drop Flask-Limiter's app-wide `after_request` hook where it has nothing to do.

    Relies on: `Limiter.init_app` registering `Limiter.__inject_headers` (name-mangled) as
    an app-wide `after_request` function. It writes the `X-RateLimit-*` headers, which are
    off (`RATELIMIT_HEADERS_ENABLED`), and settles `deduct_when` limits, which no limit
    here uses (attempts reserve their places themselves, `backoffice.attempts`); yet it
    looks up the limiter's request context on every request. Kept when the headers are
    on. Breaks loudly: a renamed hook leaves nothing to remove and fails `create_app`,
    so every test. Caught if it goes missing when needed by
    tests/tools/test_chat_usage.py (the chat limit's 429 and `Retry-After`).
    """
    if app.config.get("RATELIMIT_HEADERS_ENABLED"):
        return
    hooks = app.after_request_funcs[None]
    found = [hook for hook in hooks if getattr(hook, "func", None) is _INJECT_HEADERS]
    if len(found) != 1:
        raise RuntimeError("Flask-Limiter's after_request hook was not found: see its source")
    hooks.remove(found[0])


#: The function Flask-Limiter registers (bound to the limiter by a partial) after requests.
_INJECT_HEADERS = Limiter._Limiter__inject_headers  # type: ignore[attr-defined]


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
