"""Who is signed in to the console, and that a form was sent by the console itself.

The session is a console token in an HttpOnly cookie (`auth.service`'s console sessions:
checked exactly as an API token is, so it ends when any of the person's credentials end).
Every unsafe request carries a CSRF token, an HMAC of the session's family under the app's
secret, in a hidden form field; the sign-in form, before any session exists, binds its
token to a random cookie of its own instead. A request announcing another origin
(`Origin`, `Sec-Fetch-Site`) is refused before anything else is read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from flask import current_app, g, request
from werkzeug.wrappers import Response

from backoffice.auth import service as auth
from backoffice.errors import Forbidden
from backoffice.principal import Principal

SESSION_COOKIE = "console_session"
#: Binds the sign-in form's CSRF token before a session exists.
PRE_SESSION_COOKIE = "console_pre"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Operator:
    """The person signed in: what the pages show and what the services are told."""

    principal: Principal
    name: str
    email: str

    @property
    def user_id(self) -> uuid.UUID:
        return self.principal.user_id

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


def _csrf_for(binding: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"console-csrf:{binding}".encode(), hashlib.sha256).hexdigest()


def session_principal() -> Principal | None:
    """The person behind this request's session cookie, if it is valid now."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 4096:
        return None
    return auth.principal_from_console_session(token)


def csrf_token() -> str:
    """The token this request's forms carry (bound to the session, or the pre-session)."""
    principal: Principal | None = g.get("console_principal")
    if principal is not None:
        return _csrf_for(f"session:{principal.claims['fam']}")
    return _csrf_for(f"pre:{pre_session_id()}")


def pre_session_id() -> str:
    """The sign-in form's binding: the request's cookie, or one made for this answer."""
    existing = request.cookies.get(PRE_SESSION_COOKIE, "")
    if 20 <= len(existing) <= 64 and existing.isalnum():
        return existing
    if "console_pre_new" not in g:
        g.console_pre_new = secrets.token_hex(16)
    return str(g.console_pre_new)


def refuse_cross_site() -> None:
    """403 for an unsafe request from another site, or without this form's token."""
    if request.method not in UNSAFE_METHODS:
        return
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("This form was sent from another site: it was refused.")
    origin = request.headers.get("Origin")
    if origin is not None and origin != request.host_url.rstrip("/"):
        raise Forbidden("This form was sent from another origin: it was refused.")
    sent = request.form.get(CSRF_FIELD, "")
    if not hmac.compare_digest(sent.encode(), csrf_token().encode()):
        raise Forbidden("This form has expired or was not sent by the console: reload the page.")


def set_cookies(response: Response) -> Response:
    """After a request: a new pre-session cookie, when a sign-in form bound to one was made."""
    if "console_pre_new" in g:
        _set(response, PRE_SESSION_COOKIE, g.console_pre_new, max_age=3600)
    return response


def start_session(response: Response, token: str) -> None:
    lifetime = current_app.config["CONSOLE_SESSION_LIFETIME"]
    _set(response, SESSION_COOKIE, token, max_age=int(lifetime.total_seconds()))
    response.delete_cookie(PRE_SESSION_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        secure=current_app.config["CONSOLE_COOKIE_SECURE"],
        httponly=True,
        samesite="Strict",
    )


def _set(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=current_app.config["CONSOLE_COOKIE_SECURE"],
        httponly=True,
        samesite="Strict",
    )
