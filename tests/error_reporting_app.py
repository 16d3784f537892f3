"""Backoffice behind a real HTTP server, with one route that fails on purpose, for
tests/test_error_reporting.py: `PORT=... python -m tests.error_reporting_app` serves the
app configured by the environment (SENTRY_DSN among it), its SQLite database migrated.

`POST /boom` raises an error whose message quotes every secret the environment holds,
as a careless bug might: the report must carry the error, never those values.
"""

from __future__ import annotations

import os

import flask_migrate
from flask import current_app
from werkzeug.serving import make_server

from backoffice import create_app

app = create_app()
with app.app_context():
    flask_migrate.upgrade()


@app.post("/boom")
def boom() -> None:
    config = current_app.config
    raise RuntimeError(
        "the payment partner said no: "
        f"secret_key={config['SECRET_KEY']} llm={config['LLM_API_KEY']} "
        f"webhooks={config['WEBHOOK_SECRETS']} token={os.environ['PAYMENTS_API_TOKEN']} "
        f"broker={config['CELERY_BROKER_URL']}"
    )


if __name__ == "__main__":
    make_server("127.0.0.1", int(os.environ["PORT"]), app, threaded=True).serve_forever()
