"""`make run`: the API and a Celery worker on this machine, started once per instance folder.

Before anything starts it checks, in this order, and stops with one line and a non-zero
exit status if one fails:

1. the configuration (`backoffice.startup`), as the server would read it;
2. that no other `make run` serves from this instance folder (the SQLite database and
   the embedded broker live there): an exclusive `flock` on `instance/run.lock`, held
   until the processes stop. The kernel drops the lock when its holder dies, however it
   dies, so a crash never leaves a stale lock that blocks the next start;
3. that nothing listens on HOST:PORT already. Granian binds with SO_REUSEPORT, so a
   second server would otherwise share the port with the first (or with any other
   program) and split its requests with it; this probe binds without it, and fails.

Then it migrates the database, creates the first admin (`flask users bootstrap-admin`),
and becomes honcho, which runs the `Procfile` (`deploy/serve` and the worker).
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from backoffice.startup import app_from_environment

#: The file `make run` locks, in the instance folder.
LOCK_FILE = "run.lock"


def stop(message: str) -> NoReturn:
    print(f"make run: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def hold_instance(instance: Path) -> int:
    """Lock `instance` for this process and those it becomes (exec); the descriptor."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text().strip() or "unknown"
        stop(
            f"already running from {instance} (process {holder}); stop it first, "
            "or give this one another INSTANCE_PATH"
        )
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    os.set_inheritable(descriptor, True)  # held on by honcho, after exec
    return descriptor


def check_port_free(host: str, port: int) -> None:
    """Bind HOST:PORT as a plain server would (SO_REUSEADDR, not SO_REUSEPORT)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        stop(f"HOST {host!r} is not an address of this machine")
    family, kind, proto, _, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            stop(
                f"cannot listen on {host}:{port} ({error.strerror}); another server has it. "
                "Stop it, or choose another port: make run PORT=5001"
            )


def main() -> None:
    app = app_from_environment()
    host = os.environ.get("HOST", "127.0.0.1")
    try:
        port = int(os.environ.get("PORT", "5000"))
    except ValueError:
        stop(f"PORT must be a number, not {os.environ['PORT']!r}")
    hold_instance(Path(app.instance_path))
    check_port_free(host, port)

    scripts = Path(sys.executable).parent  # flask, honcho, granian and celery live here
    env = {**os.environ, "PATH": os.pathsep.join([str(scripts), os.environ.get("PATH", "")])}
    for command in (["flask", "db", "upgrade"], ["flask", "users", "bootstrap-admin"]):
        step = [str(scripts / command[0]), *command[1:]]
        if subprocess.run(step, env=env, check=False).returncode:  # noqa: S603 (our own tools)
            stop(f"`{' '.join(command)}` failed (see above)")
    honcho = scripts / "honcho"
    os.execve(honcho, [str(honcho), "start"], env)  # noqa: S606 (our own tool, no shell)


if __name__ == "__main__":
    main()
