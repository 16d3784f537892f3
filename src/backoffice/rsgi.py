"""The entry point `deploy/serve` gives Granian: `backoffice.rsgi:app`, the WSGI app behind
the front that reads each request whole before it takes a thread (`backoffice.serving`),
served through Granian's own interface, RSGI; the login endpoints on a lane of threads of
their own (`backoffice.lanes`)."""

from backoffice.lanes import lanes
from backoffice.serving import ThreadedWSGI
from backoffice.startup import app_from_environment

flask_app = app_from_environment()
app = ThreadedWSGI(
    flask_app,
    threads=flask_app.config["SERVER_THREADS"],
    body_timeout=flask_app.config["BODY_READ_TIMEOUT"],
    max_body=flask_app.config["MAX_CONTENT_LENGTH"],
    lanes=lanes(flask_app),
)
