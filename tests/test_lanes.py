"""Which requests get threads of their own (`backoffice.lanes`): the login endpoints,
wherever `API_PREFIX` puts them, with the threads and queue the settings give."""

from __future__ import annotations

import pytest
from flask import Flask

from backoffice import create_app
from backoffice.lanes import lanes
from backoffice.serving import Lane
from tests.support import settings


def test_the_login_lane_covers_the_token_endpoint_and_the_console_sign_in(app):
    assert lanes(app) == [
        Lane("login", prefixes=("/api/auth/token", "/console/sign-in"), threads=1, queue=128)
    ]


def test_the_login_lane_follows_the_prefix_and_the_settings(database_url):
    app = create_app(
        settings(
            DATABASE_URL=database_url,
            API_PREFIX="/v1",
            SERVER_AUTH_THREADS="2",
            SERVER_AUTH_QUEUE="9",
        )
    )
    (login,) = lanes(app)
    assert (login.prefixes, login.threads, login.queue) == (
        ("/console/sign-in", "/v1/auth/token"),
        2,
        9,
    )


def test_an_app_without_the_login_endpoints_cannot_be_served_with_a_lane_missing():
    with pytest.raises(LookupError, match=r"'auth.token', 'console.sign_in'"):
        lanes(Flask(__name__))
