"""Fixtures for tests in a real browser: Debian's Chromium, driven by Playwright, against a
real `deploy/serve` (Granian) and a real Celery worker, on SQLite and PostgreSQL.

- `console_server`: a real server (one per test process, database and settings: the
  first test to ask starts it, the others reuse it), with an admin (`.admin`) and the
  real API at hand to make users and data (`.make_user`, `.api`). Every test starts on
  an emptied database, as everywhere in the suite (`_clean_database`); the admin is made
  again before each.
- `browser` (one Chromium per test process) and `page`: a fresh context per test, so no
  cookie outlives its test. A test using `page` fails on anything a page reports going
  wrong (`page_problems`): an uncaught error, a console error (a CSP violation is one),
  a dialog (an XSS payload that ran) or a request to a host that is not this machine (the
  console works offline: nothing comes from a CDN).
- `sign_in`, `sign_out`, `check_accessibility` (axe-core, shipped inside
  axe-playwright-python: no network at test time) and `screenshot` (docs/screenshots,
  written only with SCREENSHOTS=1: `make screenshots`).
- `cross_site`: a page of another site (`localhost`, another port: not the server's
  `127.0.0.1`), to try what a hostile page could do with a signed-in browser.

Chromium is /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it); the
browser Playwright would download is never used. Without it the browser tests are
skipped, except under CI (CI=true), where they fail, as a PostgreSQL that does not answer
fails the run.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from apiflask import APIFlask
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Error,
    Page,
    Playwright,
    Request,
    ViewportSize,
    sync_playwright,
)

from backoffice.users import service as users
from tests.support import (
    PASSWORD,
    ROOT,
    TEST_SECRET_KEY,
    Account,
    deployed,
    free_port,
    serve_environment,
)

CHROMIUM = Path("/usr/bin/chromium")
#: As the project's machines run it: headless, no sandbox (root), and none of Chromium's
#: own traffic (updates, sync, field trials), which could only fail here. Playwright gives
#: every launch a fresh temporary profile (its own --user-data-dir).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: What every page is shown in, so screenshots are alike from run to run.
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
#: How long a step waits for the page (Playwright's default is 30 s): a page of this
#: machine that has not answered in 15 s is broken, and a shorter wait fails sooner.
TIMEOUT_MS = 15_000
#: The hosts a page may load from: this machine (the server, and `cross_site`).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
#: axe-core's impacts a page may not have.
BLOCKING_IMPACTS = frozenset({"serious", "critical"})
#: Where `screenshot` writes, when SCREENSHOTS=1.
SCREENSHOTS = ROOT / "docs" / "screenshots"
#: The admin every test finds (ADMIN_EMAIL and ADMIN_PASSWORD of the server).
ADMIN_EMAIL = "admin@example.com"
#: Granian workers per server: one starts sooner and serves a browser's requests well.
#: A test of what every worker must see (a session ended in one is ended in the others)
#: asks for production's two: `console_settings` returning {"GRANIAN_WORKERS": "2"}.
GRANIAN_WORKERS = "1"


# --- the server ----------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """A running `deploy/serve`: its base URL and its output."""

    url: str
    log: Path


@pytest.fixture(scope="module")
def console_settings() -> dict[str, str]:
    """Settings the server of this module's tests gets on top of the usual ones. A test
    module that needs others overrides this fixture (e.g. `{"REGISTRATION": "admin"}`);
    modules asking for the same settings share a server."""
    return {}


@pytest.fixture(scope="session")
def console_servers(
    app: APIFlask,
    database_url: str,
    queue_settings: dict[str, str],
    worker: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[dict[str, str]], Served]]:
    """`console_servers(settings)`: a `deploy/serve` with these settings, on the session's
    migrated database (`app` migrated it) and broker, whose work the session's Celery
    worker (`worker`) does. Started the first time a test asks for these settings, and
    kept for the session's other tests on this database: a start costs seconds (Granian's
    workers each import the app), a test much less. All stop when the session leaves
    this database."""
    running: dict[tuple[tuple[str, str], ...], Served] = {}
    with ExitStack() as stack:

        def serve(settings: dict[str, str]) -> Served:
            key = tuple(sorted(settings.items()))
            if key not in running:
                home = tmp_path_factory.mktemp("console")
                port, log = free_port(), home / "serve.log"
                env = serve_environment(
                    database_url,
                    home,
                    port,
                    **{
                        "APP_ENV": "testing",
                        "SECRET_KEY": TEST_SECRET_KEY,
                        "LOG_LEVEL": "WARNING",
                        "GRANIAN_WORKERS": GRANIAN_WORKERS,
                        "ADMIN_EMAIL": ADMIN_EMAIL,
                        "ADMIN_PASSWORD": PASSWORD,
                        **queue_settings,
                        **settings,
                    },
                )
                stack.enter_context(deployed(env, port, log))
                running[key] = Served(f"http://127.0.0.1:{port}", log)
            return running[key]

        yield serve


@dataclass
class ConsoleServer:
    """The server a browser test drives, and the real API on it to prepare what the test
    shows (users, items, orders...): through HTTP, as an operator's script would."""

    url: str
    #: The first admin, as ADMIN_EMAIL and ADMIN_PASSWORD made it.
    admin: Account
    #: The server's output (Granian's and the app's), for a failing test to read.
    log: Path
    _clients: list[httpx.Client] = field(default_factory=list)

    def token(self, account: Account) -> str:
        """A fresh access token for `account`, from `POST /api/auth/token`."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            response = client.post(
                "/api/auth/token", json={"email": account.email, "password": account.password}
            )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def api(self, account: Account | None = None) -> httpx.Client:
        """An HTTP client of this server's API, sending `account`'s bearer token (none
        without one); closed when the test ends."""
        headers = {"Authorization": f"Bearer {self.token(account)}"} if account else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self._clients.append(client)
        return client

    def make_user(
        self,
        role: str = "member",
        *,
        email: str | None = None,
        password: str = PASSWORD,
        name: str = "Test User",
    ) -> Account:
        """A user the admin creates through the API (`POST /api/users`), made an admin
        afterwards (`PATCH`) when `role` says so."""
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        admin = self.api(self.admin)
        created = admin.post(
            "/api/users", json={"name": name, "email": email, "password": password}
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        if role != "member":
            changed = admin.patch(f"/api/users/{user_id}", json={"role": role})
            assert changed.status_code == 200, changed.text
        return Account(uuid.UUID(user_id), email, password, role)

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def console_server(
    app: APIFlask,
    console_servers: Callable[[dict[str, str]], Served],
    console_settings: dict[str, str],
) -> Iterator[ConsoleServer]:
    """The server with this module's settings (`console_settings`), its first admin in
    place.

    The admin is made again before every test, the way `flask users bootstrap-admin`
    makes it at start-up (`users.ensure_admin` with ADMIN_EMAIL and ADMIN_PASSWORD): the
    database is emptied after every test, admin included (`_clean_database`)."""
    with app.app_context():
        made = users.ensure_admin(ADMIN_EMAIL, PASSWORD)
        assert made is not None, "an admin was left from another test: the database is not clean"
        admin = Account(made.id, ADMIN_EMAIL, PASSWORD, "admin")
    served = console_servers(console_settings)
    server = ConsoleServer(served.url, admin, served.log)
    yield server
    server.close()


# --- the browser ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver (shipped in its wheel); it never downloads a browser here."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, once per test process (a launch takes seconds; a context is
    cheap, and each test gets its own: `page`)."""
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@dataclass
class PageProblems:
    """What the pages of one test reported going wrong, and every request they made.

    A test that expects a console error (a page answering 404 logs one, a request the
    browser refuses by CORS logs another) says so with `allow`: only the messages it
    names are let through.
    """

    problems: list[str] = field(default_factory=list)
    #: Every URL the test's pages requested, in order.
    requests: list[str] = field(default_factory=list)
    _allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Let console errors matching `pattern` (a regular expression, searched) pass."""
        self._allowed.append(re.compile(pattern))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if any(allowed.search(message.text) for allowed in self._allowed):
            return
        self.problems.append(f"console error: {message.text} ({message.location})")

    def on_page_error(self, error: Error) -> None:
        self.problems.append(f"uncaught error: {error.message}")

    def on_dialog(self, dialog: Dialog) -> None:
        """A dialog nobody asked for: a script of the page's data ran (XSS)."""
        self.problems.append(f"a dialog ({dialog.type}) opened: a script ran: {dialog.message!r}")
        dialog.dismiss()

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)
        url = urlsplit(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOCAL_HOSTS:
            self.problems.append(f"a request left this machine: {request.method} {request.url}")

    def check(self) -> None:
        """Fail with everything recorded, if anything was."""
        if self.problems:
            pytest.fail("the page reported problems:\n" + "\n".join(self.problems), pytrace=False)


@pytest.fixture
def page_problems() -> PageProblems:
    """What this test's pages reported; checked after the test (`pytest_runtest_call`)."""
    return PageProblems()


@pytest.fixture
def page(
    browser: Browser, console_server: ConsoleServer, page_problems: PageProblems
) -> Iterator[Page]:
    """A page in a fresh browser context (no cookie or storage of another test), its
    relative URLs resolved against the server (`page.goto("/console/")`), every report
    recorded in `page_problems`."""
    context = browser.new_context(base_url=console_server.url, viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    context.on("page", lambda opened: _watch(opened, page_problems))
    tab = context.new_page()
    yield tab
    context.close()


def _watch(page: Page, problems: PageProblems) -> None:
    """Record what `page` (the test's, or a popup it opened) reports."""
    page.on("console", problems.on_console)
    page.on("pageerror", problems.on_page_error)
    page.on("dialog", problems.on_dialog)
    page.on("request", problems.on_request)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test whose pages reported a problem fails, as the test itself (not its
    teardown); one that failed anyway has the problems added to its report, as they are
    often the cause (a script error, then a button that never appears)."""
    problems: PageProblems | None = getattr(item, "funcargs", {}).get("page_problems")
    try:
        result = yield
    except BaseException as error:
        if problems is not None and problems.problems:
            error.add_note("the page reported problems:\n" + "\n".join(problems.problems))
        raise
    if problems is not None:
        problems.check()
    return result


# --- what tests do with a page -------------------------------------------------------


@pytest.fixture
def sign_in(console_server: ConsoleServer) -> Callable[[Page, str, str], None]:
    """`sign_in(page, email, password)`: through the sign-in form, as a person would,
    until the overview (`/console/`) shows."""

    def sign_in(page: Page, email: str, password: str) -> None:
        page.goto(f"{console_server.url}/console/sign-in")
        email_field = page.get_by_label("Email", exact=True)
        password_field = page.get_by_label("Password", exact=True)
        # The names the form posts: with JavaScript off, they are what the server reads.
        assert email_field.get_attribute("name") == "email"
        assert password_field.get_attribute("name") == "password"
        email_field.fill(email)
        password_field.fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{console_server.url}/console/")

    return sign_in


@pytest.fixture
def sign_out() -> Callable[[Page], None]:
    """`sign_out(page)`: the "Sign out" button (a form POST to /console/sign-out), and
    the page it leads to."""

    def sign_out(page: Page) -> None:
        with page.expect_navigation():
            page.get_by_role("button", name="Sign out").click()

    return sign_out


@pytest.fixture(scope="session")
def axe() -> Axe:
    """axe-core, from the copy axe-playwright-python ships (read once)."""
    return Axe()


@pytest.fixture
def check_accessibility(axe: Axe) -> Callable[[Page], None]:
    """`check_accessibility(page)`: run axe-core in the page as it is now, and fail
    listing every serious or critical violation, with the elements it found."""

    def check(page: Page) -> None:
        results: dict[str, Any] = axe.run(page).response
        blocking = [v for v in results["violations"] if v["impact"] in BLOCKING_IMPACTS]
        if blocking:
            pytest.fail(
                f"accessibility of {page.url}:\n" + "\n".join(map(_describe, blocking)),
                pytrace=False,
            )

    return check


#: How many of a violation's elements a failure names (a rule broken by a template is
#: broken on every row: the first few say where).
NAMED_ELEMENTS = 5


def _describe(violation: dict[str, Any]) -> str:
    nodes = violation["nodes"]
    targets = ", ".join(" ".join(node["target"]) for node in nodes[:NAMED_ELEMENTS])
    more = f" and {len(nodes) - NAMED_ELEMENTS} more" if len(nodes) > NAMED_ELEMENTS else ""
    return f"- {violation['id']} ({violation['impact']}): {violation['help']}; at {targets}{more}"


@pytest.fixture
def screenshot() -> Callable[..., None]:
    """`screenshot(page, name, full_page=True)`: the page (the whole of it, or what the
    window shows) into docs/screenshots/<name>.png, when SCREENSHOTS=1 (`make
    screenshots`); nothing otherwise, so test runs leave the checked-in pictures alone."""

    def take(page: Page, name: str, *, full_page: bool = True) -> None:
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", name), f"a screenshot's name: {name!r}"
        if os.environ.get("SCREENSHOTS") != "1":
            return
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=path, full_page=full_page, animations="disabled")

    return take


# --- another site --------------------------------------------------------------------


class _Pages(BaseHTTPRequestHandler):
    """Serves the HTML its server was given at `/`, and 404 elsewhere."""

    server: _PagesServer

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/favicon.ico":  # asked for by every page; a 404 is a console error
            self.send_response(204)
            self.end_headers()
            return
        body = self.server.pages.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what the browser did, not this server's log."""


class _PagesServer(ThreadingHTTPServer):
    daemon_threads = True
    pages: dict[str, bytes]


@pytest.fixture
def cross_site() -> Iterator[Callable[[str], str]]:
    """`cross_site(html)`: a URL of another site that serves `html`. Its server listens
    on 127.0.0.1 like the console, but the browser reaches it as `localhost`: another
    origin (another port) and another site (another host), so it gets what a hostile
    site gets (no SameSite cookie of the console's, no CORS grant)."""
    server = _PagesServer(("127.0.0.1", 0), _Pages)
    server.pages = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(html: str) -> str:
        path = f"/{len(server.pages)}"
        server.pages[path] = html.encode()
        return f"http://localhost:{server.server_address[1]}{path}"

    yield serve
    server.shutdown()
    server.server_close()
    thread.join()
