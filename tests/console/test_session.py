"""Signing in to the console: the API's users, password check and login limit; a session
that every way a credential ends ends too; forms only from the console itself."""

from __future__ import annotations

import pytest

from backoffice import attempts
from backoffice.items.models import Item
from tests.console.conftest import Console, csrf_of
from tests.support import PASSWORD, Account, count_rows


def _cookie(response, name: str = "console_session") -> str:  # type: ignore[no-untyped-def]
    return next(v for v in response.headers.getlist("Set-Cookie") if v.startswith(f"{name}="))


def test_a_page_without_a_session_sends_to_sign_in_and_back(console: Console, member: Account):
    answer = console.get("/console/items?q=bolt")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/console/sign-in?next=%2Fconsole%2Fitems%3Fq%3Dbolt"
    console.get(answer.headers["Location"])
    signed_in = console.post(
        "/console/sign-in",
        {"email": member.email, "password": member.password, "next": "/console/items?q=bolt"},
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["Location"] == "/console/items?q=bolt"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/api/items"])
def test_sign_in_never_sends_anywhere_but_the_console(console: Console, member, target):
    console.get("/console/sign-in")
    answer = console.post(
        "/console/sign-in", {"email": member.email, "password": member.password, "next": target}
    )
    assert answer.headers["Location"] == "/console/"


def test_the_session_cookie_is_http_only_strict_and_new_at_each_sign_in(console_as, member):
    first, second = console_as(member), console_as(member)
    cookies = [c.client.get_cookie("console_session", path="/console") for c in (first, second)]
    assert all(cookie is not None for cookie in cookies)
    assert cookies[0].value != cookies[1].value
    console = Console(first.client.application.test_client())
    console.get("/console/sign-in")
    answer = console.post("/console/sign-in", {"email": member.email, "password": PASSWORD})
    set_cookie = _cookie(answer)
    assert "HttpOnly" in set_cookie
    assert "SameSite=Strict" in set_cookie
    assert "Path=/console" in set_cookie
    assert "Secure" not in set_cookie  # development and tests: plain HTTP


def test_production_sends_the_cookie_over_https_only(make_app, database_url, member):
    app = make_app(DATABASE_URL=database_url, CONSOLE_COOKIE_SECURE="true")
    console = Console(app.test_client())
    console.get("/console/sign-in")
    answer = console.post("/console/sign-in", {"email": member.email, "password": PASSWORD})
    assert "Secure" in _cookie(answer)


def test_a_wrong_password_is_401_with_the_apis_message_and_no_session(console, member):
    console.get("/console/sign-in")
    answer = console.post("/console/sign-in", {"email": member.email, "password": "not it"})
    assert answer.status_code == 401
    assert "The email or password is not correct." in answer.text
    assert member.email in answer.text  # kept in the form, escaped
    assert not any(c.startswith("console_session=") for c in answer.headers.getlist("Set-Cookie"))


def test_a_malformed_email_is_422_and_counts_no_attempt(console):
    console.get("/console/sign-in")
    answer = console.post("/console/sign-in", {"email": "<script>x</script>", "password": "p"})
    assert answer.status_code == 422
    assert "<script>x</script>" not in answer.text
    assert "&lt;script&gt;x&lt;/script&gt;" in answer.text


class StillClock:
    """The limits' clock held 30 s into a clock minute: the window cannot end mid-test."""

    @staticmethod
    def time() -> float:
        return 1_800_000_030.0


def test_console_and_api_share_one_login_limit(app, console, member, monkeypatch):
    monkeypatch.setattr(attempts, "time", StillClock)
    ip = {"REMOTE_ADDR": "198.51.100.23"}
    console.get("/console/sign-in")
    for _ in range(5):
        refused = console.post(
            "/console/sign-in", {"email": member.email, "password": "wrong"}, environ_base=ip
        )
        assert refused.status_code == 401
    blocked = console.post(
        "/console/sign-in", {"email": member.email, "password": PASSWORD}, environ_base=ip
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    assert "Too many failed password attempts" in blocked.text
    api = app.test_client().post(
        "/api/auth/token", json={"email": member.email, "password": PASSWORD}, environ_base=ip
    )
    assert api.status_code == 429


def test_a_form_without_its_token_is_refused_and_changes_nothing(console_as, member, in_db):
    console = console_as(member)
    answer = console.client.post("/console/items", data={"name": "Forged", "quantity": "1"})
    assert answer.status_code == 403
    assert "not sent by the console" in answer.text
    answer = console.client.post(
        "/console/items", data={"name": "Forged", "quantity": "1", "csrf_token": "0" * 64}
    )
    assert answer.status_code == 403
    assert in_db(lambda: count_rows(Item)) == 0


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["origin", "fetch-metadata"],
)
def test_a_cross_site_post_is_refused_even_with_a_token(console_as, member, headers):
    console = console_as(member)
    answer = console.post("/console/items", {"name": "Cross", "quantity": "1"}, headers=headers)
    assert answer.status_code == 403
    assert "Cross" not in console.get("/console/items").text


def test_a_token_of_another_session_is_refused(console_as, member):
    first, second = console_as(member), console_as(member)
    answer = second.client.post(
        "/console/items", data={"name": "Mixed", "quantity": "1", "csrf_token": first.token}
    )
    assert answer.status_code == 403


def test_signing_out_ends_the_session_even_for_a_copy_of_its_cookie(console_as, member):
    console = console_as(member)
    stolen = console.client.get_cookie("console_session", path="/console").value
    answer = console.post("/console/sign-out")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/console/sign-in?done=signed-out"
    thief = console.client.application.test_client()
    thief.set_cookie("console_session", stolen, path="/console")
    assert thief.get("/console/items").status_code == 303


@pytest.mark.parametrize(
    "change", [{"active": False}, {"role": "admin"}, {"password": "another long password"}]
)
def test_every_end_of_a_credential_ends_the_console_session(
    console_as, as_user, admin, member, change
):
    console = console_as(member)
    assert console.get("/console/items").status_code == 200
    patched = as_user(admin).patch(f"/api/users/{member.id}", json=change)
    assert patched.status_code == 200, patched.json
    answer = console.get("/console/items")
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/console/sign-in")
    assert "console_session=;" in _cookie(answer)  # and the browser forgets it


def test_a_console_session_is_no_api_token_and_an_api_token_no_session(
    console_as, app, member, as_user
):
    console = console_as(member)
    cookie = console.client.get_cookie("console_session", path="/console").value
    api = app.test_client().get("/api/items", headers={"Authorization": f"Bearer {cookie}"})
    assert api.status_code == 401
    token = as_user(member).environ_base["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    browser = app.test_client()
    browser.set_cookie("console_session", token, path="/console")
    assert browser.get("/console/items").status_code == 303


def test_pages_are_never_cached_framed_or_given_inline_script(console_as, member):
    answer = console_as(member).get("/console/items")
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "no-store" in answer.headers["Cache-Control"]
    assert "<script>" not in answer.text
    assert " style=" not in answer.text


def test_the_sign_in_form_binds_its_token_to_a_cookie_of_its_own(console):
    page = console.get("/console/sign-in")
    pre = _cookie(page, "console_pre")
    assert "HttpOnly" in pre
    assert "SameSite=Strict" in pre
    again = console.get("/console/sign-in")
    assert csrf_of(again.text) == csrf_of(page.text)  # the same cookie, the same token
