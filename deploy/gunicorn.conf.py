"""Gunicorn, the documented alternative to Granian: `gunicorn -c deploy/gunicorn.conf.py`.

Same shape as deploy/granian.env: HOST and PORT choose the address.
"""

import multiprocessing
import os
import subprocess
import sys
from typing import Any

wsgi_app = "backoffice.wsgi:app"
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
keepalive = 5
timeout = 30
graceful_timeout = 30
backlog = 2048
accesslog = None  # the app logs one JSON line per request itself
errorlog = "-"


def on_starting(_server: Any) -> None:
    """Check the configuration once, in a process of its own, before any worker is forked:
    a bad one stops the start with one line naming the variable (as deploy/serve does)."""
    checked = subprocess.run([sys.executable, "-m", "backoffice.startup"], check=False)
    if checked.returncode:
        raise SystemExit(checked.returncode)
