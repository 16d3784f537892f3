"""Signing in and out, and the overview."""

from __future__ import annotations

from typing import Any

from flask import current_app, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from pydantic import ValidationError

from backoffice.attempts import PASSWORD_GUESSES
from backoffice.auth import service as auth
from backoffice.auth.schemas import TokenRequest
from backoffice.console import session
from backoffice.console.pages import audit, bp, operator
from backoffice.errors import TooManyRequests, Unauthorized
from backoffice.health import service as health
from backoffice.users import service as users


def _next_page() -> str:
    """Where to go after signing in: a console page, never another site."""
    wanted = request.values.get("next", "")
    if wanted.startswith("/console/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return url_for("console.overview")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """The same users, password check and login limit as `POST {prefix}/auth/token`."""
    if request.method == "GET":
        if session.session_principal() is not None:
            return redirect(_next_page(), 303)
        return render_template("console/sign_in.html", next=_next_page())
    try:
        credentials = TokenRequest.model_validate(
            {"email": request.form.get("email", ""), "password": request.form.get("password", "")}
        )
    except ValidationError:
        return _sign_in_refused(422, "Enter your email address and your password.")
    try:
        with PASSWORD_GUESSES.attempt(get_remote_address()):
            user = users.authenticate(credentials.email, credentials.password)
    except Unauthorized as error:
        return _sign_in_refused(401, error.detail)
    except TooManyRequests as error:
        return _sign_in_refused(429, error.detail, error.headers)
    answer = redirect(_next_page(), 303)
    lifetime = current_app.config["CONSOLE_SESSION_LIFETIME"]
    session.start_session(answer, auth.issue_console_session(user, lifetime))
    return answer


def _sign_in_refused(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    page = render_template(
        "console/sign_in.html",
        next=_next_page(),
        error=message,
        email=request.form.get("email", "")[:320],
    )
    return page, status, headers or {}


@bp.post("/sign-out")
def sign_out() -> Any:
    """End the session (its family, in every worker) and forget the cookie."""
    auth.logout(operator().principal.claims)
    audit("sign-out")
    answer = redirect(url_for("console.sign_in", done="signed-out"), 303)
    session.end_session(answer)
    return answer


@bp.get("/")
def overview() -> Any:
    """Readiness of each dependency, then the queues and the last day's charts."""
    return render_template("console/overview.html", checks=health.run_checks())
