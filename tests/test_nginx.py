"""Behind the bundled Nginx, on a port that is not 80, in front of the app under Granian.

Nginx runs `deploy/nginx.conf` itself, with only its listen address, its upstream and
(for the timeout case) its read timeout rewritten, and pid, logs and temporary files in
a directory of the test's own. The app trusts one proxy (PROXY_FIX_X_*=1), as compose
configures it. Skipped only where nginx is not installed (`.ci/run` installs it).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import TEST_SECRET_KEY, eventually, free_port

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CONFIG = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed: apt-get install nginx"
)
#: What is under test is the proxy in front of the app, not the database behind it.
behind_nginx = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def fetch(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Answer:
    """One request, sent as written (http.client leaves `"`, `\\` and `%22` alone)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def api_port(
    app: object, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """The app under Granian (`deploy/serve`), on the session's migrated database."""
    port = free_port()
    home = tmp_path_factory.mktemp("granian")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "APP_ENV": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": f"sqla+sqlite:///{home / 'broker.db'}",
        "INSTANCE_PATH": str(home),
        # Its own: deploy/serve empties the directory, which must not be this process's.
        "PROMETHEUS_MULTIPROC_DIR": str(home / "prometheus"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GRANIAN_WORKERS": "1",
        "LOG_LEVEL": "WARNING",
        **{f"PROXY_FIX_X_{name}": "1" for name in ("FOR", "PROTO", "HOST", "PORT")},
    }
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (the repository's own script)
            [str(ROOT / "deploy" / "serve")], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        eventually(lambda: process.poll() is not None or listening(port), timeout=60)
        assert process.poll() is None, (home / "server.log").read_text()
        yield port
    finally:
        stop(process)


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., int]]:
    """`nginx(upstream_port, read_timeout="60s")`: the bundled Nginx in front of that port;
    the port Nginx listens on. Every one started is stopped at the end of the module."""
    started: list[subprocess.Popen[bytes]] = []

    def start(upstream: int, read_timeout: str = "60s") -> int:
        port = free_port()
        home = tmp_path_factory.mktemp("nginx")
        config = BUNDLED_CONFIG.read_text()
        for bundled, rewritten in (
            ("listen 80;", f"listen 127.0.0.1:{port};"),
            ("server api:5000;", f"server 127.0.0.1:{upstream};"),
            ("proxy_read_timeout 60s;", f"proxy_read_timeout {read_timeout};"),
            ("worker_processes auto;", "worker_processes 1;"),
        ):
            assert config.count(bundled) == 1, f"deploy/nginx.conf no longer says {bundled!r}"
            config = config.replace(bundled, rewritten)
        temporary = "".join(
            f"    {kind}_temp_path {home / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = config.replace("http {\n", "http {\n" + temporary, 1)
        (home / "nginx.conf").write_text(config)
        globals_ = f"daemon off; pid {home / 'nginx.pid'}; error_log {home / 'error.log'};"
        if os.geteuid() == 0:
            globals_ += " user root;"  # workers write temporary files in the test's directory
        with (home / "stderr.log").open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 (nginx, with a config the test wrote)
                [NGINX, "-p", str(home), "-c", str(home / "nginx.conf"), "-g", globals_],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        eventually(lambda: process.poll() is not None or listening(port), timeout=30)
        assert process.poll() is None, (home / "stderr.log").read_text()
        return port

    yield start
    for process in started:
        stop(process)


@pytest.fixture
def bearer(api_port: int, member) -> dict[str, str]:
    """A member's access token, obtained through the app's own port."""
    credentials = json.dumps({"email": member.email, "password": member.password}).encode()
    answer = fetch(
        api_port,
        "POST",
        "/api/auth/token",
        {"Content-Type": "application/json", "Host": "127.0.0.1"},
        credentials,
    )
    assert answer.status == 200, answer.body
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def create_item(port: int, bearer: dict[str, str], name: str) -> dict:
    headers = {**bearer, "Content-Type": "application/json"}
    answer = fetch(port, "POST", "/api/items", headers, json.dumps({"name": name}).encode())
    assert answer.status == 201, answer.body
    return answer.json()


# --- the address the client used ---------------------------------------------------


@behind_nginx
def test_links_carry_the_port_the_client_used(api_port, nginx, bearer):
    port = nginx(api_port)
    first, second = (create_item(port, bearer, f"Proxied {n}") for n in range(2))
    page = fetch(port, "GET", "/api/items?limit=1", bearer)
    assert page.status == 200
    link = re.fullmatch(r'<([^>]+)>; rel="next"', page.headers["Link"])
    assert link, page.headers["Link"]
    url = urlsplit(link.group(1))
    assert (url.scheme, url.netloc, url.path) == ("http", f"127.0.0.1:{port}", "/api/items")
    following = fetch(url.port or 80, "GET", f"{url.path}?{url.query}", bearer)
    assert following.status == 200
    ids = {item["id"] for item in page.json()["data"] + following.json()["data"]}
    assert ids == {first["id"], second["id"]}
    # The app's own headers pass through once, not doubled by Nginx.
    assert page.headers.get_all("X-Content-Type-Options") == ["nosniff"]
    assert page.headers["Cache-Control"] == "no-store"


@behind_nginx
def test_openapi_servers_carry_the_port_and_try_it_out_works(api_port, nginx, bearer):
    port = nginx(api_port)
    # A direct request first (a health check would do it): it must not pin the address.
    direct = fetch(api_port, "GET", "/openapi.json", {"Host": f"127.0.0.1:{api_port}"})
    assert direct.json()["servers"] == [{"url": f"http://127.0.0.1:{api_port}"}]
    spec = fetch(port, "GET", "/openapi.json").json()
    assert spec["servers"] == [{"url": f"http://127.0.0.1:{port}"}]
    by_name = fetch(port, "GET", "/openapi.json", {"Host": f"localhost:{port}"}).json()
    assert by_name["servers"] == [{"url": f"http://localhost:{port}"}]
    # "Try it out": the docs page sends the request to `servers` + the operation's path.
    create_item(port, bearer, "Tried out")
    assert "/api/items" in spec["paths"]
    server = urlsplit(spec["servers"][0]["url"])
    tried = fetch(server.port or 80, "GET", f"{server.path}/api/items", bearer)
    assert tried.status == 200
    assert [item["name"] for item in tried.json()["data"]] == ["Tried out"]


@behind_nginx
def test_a_host_outside_trusted_hosts_is_refused_through_nginx(api_port, nginx, bearer):
    port = nginx(api_port)
    answer = fetch(port, "GET", "/api/items", {**bearer, "Host": f"evil.example:{port}"})
    assert answer.status == 400
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["status"] == 400
    assert "Link" not in answer.headers


# --- Nginx's own answers --------------------------------------------------------------

#: Characters JSON must escape, in the path as a client may send them: raw and encoded.
AWKWARD = '/api/items/"\\%22%5C'


def silent_upstream() -> tuple[socket.socket, int]:
    """A server that takes connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener, listener.getsockname()[1]


def assert_nginx_problem(answer: Answer, status: int, slug: str, instance: str = "") -> None:
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "application/problem+json"
    problem = answer.json()  # valid JSON, whatever the path held
    assert problem["type"] == f"/problems/{slug}"
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    assert problem["instance"] == instance
    assert problem["request_id"] == answer.headers["X-Request-ID"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


@behind_nginx
def test_a_header_too_large_is_a_problem(api_port, nginx):
    port = nginx(api_port)
    answer = fetch(port, "GET", AWKWARD, {"X-Padding": "x" * 20_000})
    assert_nginx_problem(answer, 400, "bad-request")


@behind_nginx
def test_a_uri_too_long_is_a_problem(api_port, nginx):
    port = nginx(api_port)
    answer = fetch(port, "GET", AWKWARD + "a" * 20_000)
    assert_nginx_problem(answer, 414, "request-uri-too-long")


@behind_nginx
def test_a_body_too_large_is_a_problem(api_port, nginx, bearer):
    port = nginx(api_port)
    # Nginx refuses on the announced length, before reading any of the body.
    headers = {**bearer, "Content-Type": "application/json", "Content-Length": str(2 << 20)}
    answer = fetch(port, "POST", AWKWARD, headers)
    assert_nginx_problem(answer, 413, "request-entity-too-large")
    plain = fetch(port, "POST", "/api/items", headers)
    assert_nginx_problem(plain, 413, "request-entity-too-large", instance="/api/items")


@behind_nginx
def test_a_login_storm_is_refused_by_nginx_before_the_app(api_port, nginx):
    """Past 10 logins a second from one address (a burst of 20), Nginx answers 429 itself.

    The storm's logins are malformed (422 from the app, which gives their place in the
    app's own window back), so this test leaves no failed login counted against
    127.0.0.1 for the module's other logins. 200 attempts, 10 at a time: Nginx lets
    through at most 20 plus 10 a second, so it refuses some unless they take 18 s.
    """
    port = nginx(api_port)
    body = json.dumps({"email": "not-an-email", "password": "x"}).encode()

    def attempt(_: int) -> Answer:
        return fetch(port, "POST", "/api/auth/token", {"Content-Type": "application/json"}, body)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(attempt, range(200)))
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) == {422, 429}, statuses
    for answer in answers:
        if answer.status == 429:
            assert_nginx_problem(answer, 429, "too-many-requests", instance="/api/auth/token")
            assert answer.headers["Retry-After"] == "1"
    # Only the login is limited: the same address reads on, and other problems carry no
    # Retry-After.
    assert fetch(port, "GET", "/health").status == 200
    assert "Retry-After" not in fetch(port, "GET", "/.problem").headers


def test_an_api_that_is_down_is_a_502_problem(nginx):
    port = nginx(free_port())
    answer = fetch(port, "GET", AWKWARD, {"X-Request-ID": "client-chosen-1"})
    assert_nginx_problem(answer, 502, "bad-gateway")
    assert answer.headers["X-Request-ID"] == "client-chosen-1"
    query = fetch(port, "GET", '/api/items?q="\\')
    assert_nginx_problem(query, 502, "bad-gateway", instance="/api/items")
    # Percent-encoded, the path is safe in JSON as it is: it is the instance.
    encoded = fetch(port, "GET", "/api/items/%22%5C%7B%7D")
    assert_nginx_problem(encoded, 502, "bad-gateway", instance="/api/items/%22%5C%7B%7D")


def test_an_api_that_does_not_answer_in_time_is_a_504_problem(nginx):
    listener, upstream = silent_upstream()
    with listener:
        port = nginx(upstream, read_timeout="1s")
        assert_nginx_problem(fetch(port, "GET", AWKWARD), 504, "gateway-timeout")


@behind_nginx
def test_nginx_internal_error_page_is_not_reachable(api_port, nginx):
    port = nginx(api_port)
    answer = fetch(port, "GET", "/.problem")
    assert_nginx_problem(answer, 404, "not-found", instance="/.problem")


# --- requests without Host (HTTP/1.0) --------------------------------------------


def raw_exchange(port: int, request: bytes) -> tuple[int, Message, bytes]:
    """`request` sent byte for byte (http.client always adds a Host); the status, headers
    and body of the answer, read until Nginx closes (HTTP/1.0)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = Message()
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name] = value.strip()
    return int(status_line.split()[1]), headers, body


@behind_nginx
def test_a_health_check_without_host_is_answered(api_port, nginx):
    """Old load balancers check with `GET /health HTTP/1.0` and no Host: the app answers
    it (Nginx names the host the image's own health check uses, which TRUSTED_HOSTS
    holds)."""
    port = nginx(api_port)
    status, headers, body = raw_exchange(port, b"GET /health HTTP/1.0\r\n\r\n")
    assert status == 200, body
    assert json.loads(body) == {"status": "healthy"}
    assert headers["X-Request-ID"]


@behind_nginx
def test_an_api_request_without_host_is_a_problem_from_nginx(api_port, nginx, bearer):
    """Without Host the app could not tell the name the client used (for links), so
    everything but /health is refused by Nginx, with a problem saying why."""
    port = nginx(api_port)
    request = f"GET /api/items HTTP/1.0\r\nAuthorization: {bearer['Authorization']}\r\n\r\n"
    answer = Answer(*raw_exchange(port, request.encode()))
    assert_nginx_problem(answer, 400, "bad-request", instance="/api/items")
    no_host = "The request has no Host header: only /health is answered without one."
    assert answer.json()["detail"] == no_host
    login = Answer(*raw_exchange(port, b"POST /api/auth/token HTTP/1.0\r\n\r\n"))
    assert_nginx_problem(login, 400, "bad-request", instance="/api/auth/token")
    assert login.json()["detail"] == no_host
    # With a Host, the same path is the app's as ever.
    assert fetch(port, "GET", "/api/items", bearer).status == 200
