"""Backoffice behind a real HTTP server that dies (SIGKILL) at one point of a keyed create.

`PORT=... python -m tests.crash_server` serves the app configured by the environment.
`CRASH_AT` names where a POST carrying an `Idempotency-Key` kills the process:

- `before-commit`: the key is claimed (first commit) and the resource written, but the
  transaction holding the resource and its stored answer has not committed;
- `after-commit`: that transaction has committed; the answer was never sent.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import event
from werkzeug.serving import make_server

from backoffice import create_app
from backoffice.database import RequestSession

app = create_app()
CRASH_AT = os.environ.get("CRASH_AT", "")


def _die_on_second(point: str) -> Any:
    """The first commit of a keyed create is its claim; the second, its resource."""

    def listener(_session: Any) -> None:
        if point != CRASH_AT or not has_request_context():
            return
        if request.method != "POST" or "Idempotency-Key" not in request.headers:
            return
        seen = g.setdefault(f"commits_{point}", 0) + 1
        setattr(g, f"commits_{point}", seen)
        if seen == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    return listener


event.listen(RequestSession, "before_commit", _die_on_second("before-commit"))
event.listen(RequestSession, "after_commit", _die_on_second("after-commit"))

if __name__ == "__main__":
    make_server("127.0.0.1", int(os.environ["PORT"]), app, threaded=True).serve_forever()
