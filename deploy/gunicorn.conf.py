"""Gunicorn, the documented alternative to Granian: `gunicorn -c deploy/gunicorn.conf.py`.

Same shape as deploy/granian.env: HOST and PORT choose the address.

Metrics (backoffice/metrics.py) as with `deploy/serve`: the multiprocess directory is set
here, in the arbiter, before any worker imports the app; emptied once when the server
starts; and a worker that exits has its live gauges (in-flight requests, checked-out
connections) taken out of the sums, which Gunicorn, unlike Granian, lets us do.
"""

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Before anything imports prometheus_client: it picks multiprocess mode when imported.
METRICS_DIR = Path(
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(Path.cwd() / "instance" / "prometheus"))
)

wsgi_app = "backoffice.wsgi:app"
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
# As many threads as deploy/serve runs per process: CHAT_CALLS_PER_PROCESS is checked against it.
threads = int(os.environ.get("SERVER_THREADS", "4"))
worker_class = "gthread"
keepalive = 5
timeout = 30
graceful_timeout = 30
backlog = 2048
accesslog = None  # the app logs one JSON line per request itself
errorlog = "-"


def on_starting(_server: Any) -> None:
    """Check the configuration once, in a process of its own, before any worker is forked:
    a bad one stops the start with one line naming the variable (as deploy/serve does).
    Then empty the metrics directory, once per server start."""
    checked = subprocess.run([sys.executable, "-m", "backoffice.startup"], check=False)
    if checked.returncode:
        raise SystemExit(checked.returncode)
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for file in METRICS_DIR.glob("*.db"):
        file.unlink(missing_ok=True)


def child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client.multiprocess import mark_process_dead  # after the variable is set

    mark_process_dead(worker.pid, str(METRICS_DIR))
