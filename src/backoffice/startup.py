"""Where the processes we ship begin: the WSGI app (`backoffice.wsgi`), the Celery worker
(`backoffice.worker`), the `flask` command (`.flaskenv`), the check `make run` and
Gunicorn make before a server forks its workers, and the server `deploy/serve` runs.

A configuration the service refuses (`ConfigError`) ends the process with one line that
names the variable and exit status 2, never a traceback. Checked once before the server
starts (`python -m backoffice.startup`), it stops there: a worker that failed on it would
otherwise be respawned by the server, failing again, forever.

`python -m backoffice.startup serve TARGET` is Granian's command line (`deploy/serve`),
run in a process that has imported the app's modules and checked the configuration
first. Granian forks its workers from that process, so each worker inherits the imports
(nearly all of a start's time) and only builds its app: a restart costs one import, not
one for the check and one per worker (`make bench-restart`). The check builds the app in a
forked child of its own, so the server's process never holds an app's connections,
threads or SDK clients for the workers to inherit.

One variable is checked earlier, as `backoffice` is imported: PROMETHEUS_MULTIPROC_DIR,
which prometheus-client writes to as the first metric is made (`backoffice.metrics`).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence
from typing import NoReturn

from apiflask import APIFlask
from dotenv import load_dotenv

from backoffice import create_app
from backoffice.config import ConfigError, refuse
from backoffice.lanes import lanes

#: What Granian serves unless told otherwise: the WSGI app behind the front that reads
#: each request whole first (`backoffice.rsgi`).
DEFAULT_TARGET = "backoffice.rsgi:app"


def app_from_environment() -> APIFlask:
    """The app as the environment (and a `.env` file in the working directory) sets it up."""
    load_dotenv()
    try:
        return create_app()
    except ConfigError as error:
        refuse(error)


def main() -> None:
    """Build the app once, as each server worker will (its lanes too: a login endpoint
    renamed without `lanes` knowing fails here, once, not in every respawned worker), so a
    bad setting stops the start."""
    lanes(app_from_environment())


def checked_apart() -> int:
    """`main()` in a forked child: its exit status (0, or 2 after the one line). Forked, it
    costs no second import; apart, the app it builds leaves nothing in this process."""
    check = multiprocessing.get_context("fork").Process(target=main, name="backoffice-check")
    check.start()
    check.join()
    return check.exitcode or 0


def serve(arguments: Sequence[str]) -> NoReturn:
    """Check the configuration, then run Granian's command line (its settings from the
    GRANIAN_* variables, as the `granian` command reads them) in this process."""
    status = checked_apart()
    if status:
        sys.exit(status)
    from granian.cli import cli

    # Granian starts its workers the multiprocessing way; forked, they inherit the imports.
    multiprocessing.set_start_method("fork", force=True)
    target = list(arguments) or [DEFAULT_TARGET]
    cli.main(args=target, prog_name="granian", auto_envvar_prefix="GRANIAN")
    sys.exit(0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2:])
    main()
