"""Where the processes we ship begin: the WSGI app (`backoffice.wsgi`), the Celery worker
(`backoffice.worker`), the `flask` command (`.flaskenv`), and the check `deploy/serve` and
`make run` make before a server forks its workers.

A configuration the service refuses (`ConfigError`) ends the process with one line that
names the variable and exit status 2, never a traceback. Checked once before the server
starts (`python -m backoffice.startup`), it stops there: a worker that failed on it would
otherwise be respawned by the server, failing again, forever.

One variable is checked earlier, as `backoffice` is imported: PROMETHEUS_MULTIPROC_DIR,
which prometheus-client writes to as the first metric is made (`backoffice.metrics`).
"""

from __future__ import annotations

from apiflask import APIFlask
from dotenv import load_dotenv

from backoffice import create_app
from backoffice.config import ConfigError, refuse


def app_from_environment() -> APIFlask:
    """The app as the environment (and a `.env` file in the working directory) sets it up."""
    load_dotenv()
    try:
        return create_app()
    except ConfigError as error:
        refuse(error)


def main() -> None:
    """Build the app once, as each server worker will, so a bad setting stops the start."""
    app_from_environment()


if __name__ == "__main__":
    main()
