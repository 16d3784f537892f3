"""Signing in and out, and the overview."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, redirect, render_template, request, url_for
from flask_limiter.util import get_remote_address
from pydantic import ValidationError

from backoffice import activity, work
from backoffice.attempts import PASSWORD_GUESSES
from backoffice.auth import service as auth
from backoffice.auth.schemas import TokenRequest
from backoffice.console import charts, session
from backoffice.console.pages import audit, bp, operator
from backoffice.database import utcnow
from backoffice.errors import TooManyRequests, Unauthorized
from backoffice.health import service as health
from backoffice.jobs import service as jobs
from backoffice.orders import service as orders
from backoffice.users import service as users
from backoffice.webhooks import service as webhooks


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
        if g.console_principal is not None:  # checked once, by the blueprint's before_request
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
    """Readiness of each dependency; to admins, the queues and the last day's charts too
    (as the workers last tallied them: the page reads a few hundred small rows)."""
    checks = health.run_checks()
    if not operator().is_admin:
        return render_template("console/overview.html", checks=checks)
    taken, snapshot = activity.latest_snapshots("queue:")
    return render_template(
        "console/overview.html",
        checks=checks,
        queues=work.snapshot_states(snapshot),
        taken=taken,
        tallied=activity.last_tally(),
        charts=_charts(),
        now=utcnow(),
    )


def _charts() -> list[charts.Chart]:
    """The last day's figures, each capability's read through its service."""
    hourly = webhooks.outcomes_per_hour(24)
    hours = [hour.strftime("%H:00") for hour in hourly.hours]
    requests = activity.hourly("http_requests", 24)
    days, transitions, per_day = orders.transitions_per_day(7)
    durations = jobs.run_durations(24)
    return [
        charts.stacked(
            "requests",
            "Requests per hour by status class",
            "requests",
            hours,
            ["2xx", "3xx", "4xx", "5xx"],
            requests.values,
            every=3,
        ),
        charts.stacked(
            "webhooks",
            "Webhook events finished per hour, by outcome",
            "events",
            hours,
            ["processed", "ignored", "failed"],
            hourly.values,
            every=3,
        ),
        charts.stacked(
            "orders",
            "Orders per day (UTC), by what happened to them",
            "orders",
            [day.isoformat() for day in days],
            transitions,
            per_day,
        ),
        charts.stacked(
            "jobs",
            "Job runs ended in the last 24 hours, by duration",
            "runs",
            list(durations),
            ["runs"],
            [{"runs": n} for n in durations.values()],
        ),
    ]
