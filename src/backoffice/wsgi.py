"""The WSGI entry point for production servers: `backoffice.wsgi:app`."""

from backoffice.startup import app_from_environment

app = app_from_environment()
