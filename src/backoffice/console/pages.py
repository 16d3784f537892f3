"""What every console page shares: the blueprint, who is signed in, the CSRF check, the
policy browsers enforce, and errors as pages rather than problem documents."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import structlog
from apiflask import APIBlueprint
from flask import current_app, g, redirect, render_template, request, url_for
from markupsafe import Markup
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from backoffice.console import session
from backoffice.errors import APIError
from backoffice.pagination import MAX_LIMIT
from backoffice.users import service as users

log = structlog.get_logger(__name__)

#: An APIBlueprint only so APIFlask's document generation knows to leave it out: the
#: console's pages are HTML, not operations of the API.
bp = APIBlueprint(
    "console",
    __name__,
    enable_openapi=False,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

#: The console's pages load only their own script, style and images, send forms only to
#: themselves, and may not be framed. No inline script or style at all.
CONSOLE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
#: Pages anyone may open: signing in, and the assets the sign-in page loads.
PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.static"})

View = TypeVar("View", bound=Callable[..., Any])


def operator() -> session.Operator:
    """The person signed in (inside a console view)."""
    found: session.Operator = g.console_operator
    return found


def admin_only(view: View) -> View:
    """A page for admins: to anyone else it does not exist (404, as in the API)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not operator().is_admin:
            return error_page(404, "Not found", "There is no such page.")
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


@bp.before_request
def _sign_in_first() -> Response | None:
    if request.endpoint == "console.static":
        return None  # the stylesheet and the script: the same for everyone
    principal = session.session_principal()
    g.console_principal = principal
    if principal is not None:
        user = users.get_user(principal.user_id)
        g.console_operator = session.Operator(principal, user.name, user.email)
        g.user_id = principal.user_id  # the request log line says who
    elif request.endpoint not in PUBLIC_ENDPOINTS:
        target = url_for("console.sign_in")
        if request.method == "GET" and request.full_path.rstrip("?") != "/console/":
            target += "?" + urlencode({"next": request.full_path.rstrip("?")})
        answer = redirect(target, 303)
        if request.cookies.get(session.SESSION_COOKIE):
            session.end_session(answer)  # an ended session: forget the cookie too
        return answer
    session.refuse_cross_site()
    return None


@bp.after_request
def _policies(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONSOLE_CSP
    # Not `no-referrer`, as the API says: under it Chromium sends `Origin: null` with the
    # console's own form posts, which the cross-site check must refuse. Same-origin
    # requests carry their origin; nothing leaves for another site.
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.cache_control.no_store = True  # personal pages: never kept by a cache
        response.headers["X-Frame-Options"] = "DENY"
    return session.set_cookies(response)


def audit(action: str, **fields: Any) -> None:
    """One log line per change made in the console, saying who made it."""
    log.info("console.action", action=action, by=str(operator().user_id), **fields)


def error_page(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Any:
    return render_template("console/error.html", title=title, detail=detail), status, headers or {}


@bp.errorhandler(APIError)
def _api_error(error: APIError) -> Any:
    title = {404: "Not found", 403: "Refused", 429: "Too many attempts"}.get(error.status, "Error")
    return error_page(error.status, title, error.detail, error.headers)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    status = error.code or 500
    return error_page(status, error.name, error.description or "")


def page_limit() -> int:
    """Rows per list page: `?limit=` within the API's bounds, 25 by default."""
    raw = request.args.get("limit", "25")
    return min(max(int(raw), 1), MAX_LIMIT) if raw.isdigit() else 25


def cursor_arg() -> str | None:
    return request.args.get("cursor") or None


def uuid_arg(name: str) -> uuid.UUID | None:
    raw = request.form.get(name) or request.args.get(name)
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def field_errors(error: ValidationError | APIError) -> dict[str, str]:
    """What a form's fields got wrong, by field name: from the API's input model, or from a
    service's refusal naming fields (`errors`); one refusal naming none is the form's."""
    if isinstance(error, ValidationError):
        return {str(e["loc"][0]) if e["loc"] else "form": e["msg"] for e in error.errors()}
    named = {e["field"]: e["message"] for e in error.errors or () if "field" in e}
    return named or {"form": error.detail}


def back_to(endpoint: str, done: str, **values: Any) -> Response:
    """Post/redirect/get: back to a page, which says what was just done (`done`, a key of
    the page's own messages: nothing the client sends is echoed)."""
    return redirect(url_for(endpoint, done=done, **values), 303)


#: The navigation: (endpoint, label, admins only).
NAV_LINKS = [
    ("console.overview", "Overview", False),
    ("console.item_list", "Items", False),
    ("console.order_list", "Orders", False),
    ("console.todo_list", "Todos", False),
    ("console.job_list", "Jobs", False),
    ("console.event_list", "Webhooks", True),
    ("console.user_list", "Users", True),
    ("console.key_list", "API keys", False),
]


@bp.context_processor
def _page_context() -> dict[str, Any]:
    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(
            session.CSRF_FIELD, session.csrf_token()
        )

    links = [link for link in NAV_LINKS if link[0] in current_app.view_functions]
    return {"csrf_field": csrf_field, "nav_links": links}
