"""Optional error reporting to Sentry (or any ingest that speaks its protocol), on only
when SENTRY_DSN is set; otherwise the SDK is not even imported (it is the `sentry` extra).

What is reported: the unexpected errors the problem layer answers with a 500
(`errors.handle_unexpected` calls `report`, with the same redacted error the log gets: a
database error's parameters are never in it), and whatever escapes a Celery task or is
logged at ERROR through the standard library by the libraries (Celery, Kombu).

What is never sent: request bodies (`max_request_body_size="never"`), cookies and the
client's address (`send_default_pii=False`), local variables, the headers that carry
credentials (Authorization, Cookie, X-Api-Key, webhook signatures: anything named like a
secret), and the value of any setting or environment variable named like a secret
(SECRET, PASSWORD, KEY, TOKEN, DSN) or of a password inside a URL setting, wherever it
shows up in an event, even inside an exception's message (`scrub`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Flask, current_app

from backoffice.config import ConfigError

if TYPE_CHECKING:  # the SDK is optional: imported at run time only when reporting is on
    from sentry_sdk.types import Event, Hint

#: Names (of headers, settings, variables, fields) whose values are never sent.
SENSITIVE = re.compile(r"SECRET|PASSWORD|PASSWD|KEY|TOKEN|DSN|AUTH|COOKIE|SIGNATURE", re.I)
FILTERED = "[Filtered]"
#: Shorter values are not looked for in an event's text (they would match by chance).
MIN_SECRET_LENGTH = 6


def init_error_reporting(app: Flask, release: str) -> None:
    """Start the Sentry SDK for this process when SENTRY_DSN is set (from `create_app`,
    so the web processes and the workers both report), errors filed under `release`;
    do nothing otherwise."""
    dsn = app.config.get("SENTRY_DSN")
    if not dsn:
        return
    try:
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration
        from sentry_sdk.integrations.flask import FlaskIntegration
    except ImportError:
        raise ConfigError(
            "SENTRY_DSN is set but the Sentry SDK is not installed: "
            "install backoffice[sentry] (sentry-sdk[flask,celery])"
        ) from None

    secrets = secret_values(app.config, os.environ)
    sentry_sdk.init(
        dsn=dsn,
        environment=app.config["SENTRY_ENVIRONMENT"] or app.config.get("APP_ENV", "development"),
        release=f"backoffice@{release}",
        traces_sample_rate=app.config["SENTRY_TRACES_SAMPLE_RATE"],
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        integrations=[FlaskIntegration(), CeleryIntegration()],
        before_send=scrubber(secrets),
        before_send_transaction=scrubber(secrets),
        before_breadcrumb=lambda crumb, _hint: scrub_value(crumb, secrets),
    )
    app.extensions["error_reporting"] = sentry_sdk


def report(error: BaseException) -> None:
    """Send `error` when reporting is on (the caller has already logged it)."""
    sdk = current_app.extensions.get("error_reporting")
    if sdk is not None:
        sdk.capture_exception(error)


def secret_values(*sources: Mapping[str, Any]) -> list[str]:
    """The values to keep out of every event: those of settings and environment variables
    named like secrets (every string inside, for a mapping such as WEBHOOK_SECRETS), and
    the password of any URL among the settings (DATABASE_URL's, a broker's)."""
    found: set[str] = set()
    for source in sources:
        for name, value in source.items():
            if SENSITIVE.search(str(name)):
                found.update(_strings(value))
            elif isinstance(value, str) and "://" in value:
                password = _url_password(value)
                if password:
                    found.add(password)
    # Longest first: a secret that contains another is replaced whole.
    return sorted((v for v in found if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list | tuple | set | frozenset):
        for inner in value:
            yield from _strings(inner)


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def scrubber(secrets: list[str]) -> Callable[[Event, Hint], Event | None]:
    """The `before_send` hook: drop what must never leave, mask what is named or valued
    like a secret."""

    def scrub(event: Event, _hint: Hint) -> Event | None:
        request = event.get("request")
        if isinstance(request, dict):
            for never in ("data", "cookies", "env"):
                request.pop(never, None)
            query = request.get("query_string")
            if isinstance(query, str) and query:
                request["query_string"] = urlencode(
                    [
                        (name, FILTERED if SENSITIVE.search(name) else value)
                        for name, value in parse_qsl(query, keep_blank_values=True)
                    ]
                )
        scrubbed: Event = scrub_value(event, secrets)
        return scrubbed

    return scrub


def scrub_value(value: Any, secrets: list[str], name: str | None = None) -> Any:
    """`value` with anything under a secret's name masked and every secret's text
    replaced, however deep."""
    if name is not None and SENSITIVE.search(name) and value not in (None, "", [], {}):
        return FILTERED
    if isinstance(value, dict):
        return {key: scrub_value(inner, secrets, str(key)) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        # Header lists come as [name, value] pairs: the name decides for the value.
        if len(value) == 2 and isinstance(value[0], str) and SENSITIVE.search(value[0]):
            return [value[0], FILTERED]
        return [scrub_value(inner, secrets) for inner in value]
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
    return value
