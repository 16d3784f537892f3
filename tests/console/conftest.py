"""Console tests through Flask's test client: the pages' status, body and what the
database holds afterwards. (What a person does in a browser: tests/browser/.)"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from tests.support import Account

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


class Console:
    """A browser-like client of the console: cookies kept, forms sent with their token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.token = ""

    def get(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        response = self.client.get(path, **kwargs)
        if response.status_code == 200 and CSRF.search(response.text):
            self.token = csrf_of(response.text)
        return response

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        if not self.token:
            self.get("/console/sign-in")
        return self.client.post(path, data={"csrf_token": self.token, **(data or {})}, **kwargs)

    def sign_in(self, account: Account) -> None:
        self.get("/console/sign-in")
        answer = self.post(
            "/console/sign-in", {"email": account.email, "password": account.password}
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["Location"] == "/console/"
        self.get("/console/items")  # the session's own CSRF token


@pytest.fixture
def console(app: APIFlask) -> Console:
    """An anonymous browser."""
    return Console(app.test_client())


@pytest.fixture
def console_as(app: APIFlask) -> Callable[[Account], Console]:
    """A browser signed in as `account`."""

    def signed_in(account: Account) -> Console:
        browser = Console(app.test_client())
        browser.sign_in(account)
        return browser

    return signed_in
