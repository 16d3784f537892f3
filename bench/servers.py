"""Run an app under the production server settings on a free loopback port, then stop it."""

from __future__ import annotations

import http.client
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib.metadata import version
from pathlib import Path

from bench import ROOT

HOST = "127.0.0.1"
#: `granian-wsgi`: Backoffice through Granian's WSGI interface instead of the front of
#: `backoffice.serving` (what deploy/serve ran before it), to compare the two.
SERVERS = ("granian", "gunicorn", "granian-wsgi")
#: The tutorials' shape, for the toy reference only: Gunicorn with 4 sync workers.
TOY_SERVER = "gunicorn-sync"
TOY_WORKERS = 4
SERVE = ROOT / "deploy" / "serve"
GRANIAN_ENV = ROOT / "deploy" / "granian.env"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
#: Backoffice as `deploy/serve` serves it (Granian's RSGI interface, `backoffice.serving`),
#: and as a WSGI server (Gunicorn) takes it.
BACKOFFICE = "backoffice.rsgi:app"
BACKOFFICE_WSGI = "backoffice.wsgi:app"
#: The reference apps are plain WSGI apps: Granian serves them with its WSGI interface and
#: as many threads as Backoffice's front runs.
WSGI_UNDER_GRANIAN = {"GRANIAN_INTERFACE": "wsgi", "GRANIAN_BLOCKING_THREADS": "4"}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def command(server: str, target: str, port: int) -> list[str]:
    if server == TOY_SERVER:
        options = ["--workers", str(TOY_WORKERS), "--worker-class", "sync", "--no-control-socket"]
        return [sys.executable, "-m", "gunicorn", *options, "--bind", f"{HOST}:{port}", target]
    if server == "gunicorn":
        # One control socket path (~/.gunicorn) would be shared by the three servers.
        conf = ["-c", str(GUNICORN_CONF), "--no-control-socket"]
        wsgi_target = BACKOFFICE_WSGI if target == BACKOFFICE else target
        return [sys.executable, "-m", "gunicorn", *conf, wsgi_target]
    return [str(SERVE)]  # deploy/serve reads APP_TARGET


def _granian_settings() -> dict[str, str]:
    lines = GRANIAN_ENV.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    overrides = {k: v for k, v in os.environ.items() if k.startswith("GRANIAN_")}
    return {**dict(pairs), **overrides}


def _gunicorn_settings() -> dict[str, object]:
    plain = (str, int, float, bool, type(None))
    conf = runpy.run_path(str(GUNICORN_CONF))
    return {k: v for k, v in conf.items() if not k.startswith("_") and isinstance(v, plain)}


def settings(server: str) -> dict[str, object]:
    """The settings the server runs with (its address aside), for the results file."""
    found: Mapping[str, object] = (
        _gunicorn_settings() if server == "gunicorn" else _granian_settings()
    )
    if server == "granian-wsgi":
        found = {**found, **WSGI_UNDER_GRANIAN}
    kept = {k: v for k, v in found.items() if k not in {"bind", "GRANIAN_HOST", "GRANIAN_PORT"}}
    return {"server": server, "version": version(server.removesuffix("-wsgi")), **kept}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not healthy(port):
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer on /health after {START_TIMEOUT:.0f}s; see {log}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left after the grace time."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(STOP_TIMEOUT)


def listening_on(port: int) -> dict[str, str]:
    """The settings that put a server (Granian or Gunicorn, through our scripts) on `port`."""
    return {"HOST": HOST, "PORT": str(port), "GRANIAN_HOST": HOST, "GRANIAN_PORT": str(port)}


def launch(command: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server from the repository in a process group of its own (`stop` ends the
    whole group), its output in `log`."""
    with log.open("wb") as output:
        return subprocess.Popen(  # noqa: S603 (our own servers)
            list(command),
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def running(server: str, target: str, env: Mapping[str, str], log: Path) -> Iterator[str]:
    """Serve `target`, yield its base URL once /health answers; always stop it."""
    port = free_port()
    address = listening_on(port)
    if server == "granian-wsgi" and target == BACKOFFICE:
        target = BACKOFFICE_WSGI
    if target != BACKOFFICE:
        address.update(WSGI_UNDER_GRANIAN)
    process = launch(command(server, target, port), {**env, **address, "APP_TARGET": target}, log)
    try:
        wait_healthy(process, port, log)
        yield f"http://{HOST}:{port}"
    finally:
        stop(process)
