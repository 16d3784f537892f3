"""Your API keys in the console: created with the scopes ticked, the secret shown once on
the answer to the form and never again, revoked."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from backoffice.auth.models import ApiKey
from backoffice.extensions import db
from tests.support import count_rows

KEY = re.compile(r'value="(bo_[0-9a-f]{8}_[A-Za-z0-9_-]+)"')


def _keys(in_db) -> list[ApiKey]:
    return in_db(lambda: db.session.scalars(select(ApiKey).order_by(ApiKey.id)).all())


def test_a_new_key_is_shown_once_and_works_with_its_scopes(console_as, member, anonymous, in_db):
    console = console_as(member)
    form = console.get("/console/keys")
    assert 'value="admin"' not in form.text  # a member may not grant it
    answer = console.post(
        "/console/keys", {"name": "CI <deploy>", "scopes": ["items", "todos"], "expires_at": ""}
    )
    assert answer.status_code == 201
    assert "no-store" in answer.headers["Cache-Control"]
    found = KEY.search(answer.text)
    assert found is not None
    [stored] = _keys(in_db)
    assert (stored.name, stored.scopes, stored.expires_at) == (
        "CI <deploy>",
        ["items", "todos"],
        None,
    )
    assert found.group(1) not in console.get("/console/keys").text  # never shown again
    assert "CI &lt;deploy&gt;" in console.get("/console/keys").text
    headers = {"X-API-Key": found.group(1)}
    assert anonymous.get("/api/todos", headers=headers).status_code == 200
    assert anonymous.get("/api/orders", headers=headers).status_code == 403


def test_an_expiry_is_read_as_utc(console_as, member, in_db):
    when = (datetime.now(UTC) + timedelta(days=30)).replace(second=0, microsecond=0)
    answer = console_as(member).post(
        "/console/keys",
        {"name": "Temp", "scopes": ["items"], "expires_at": when.strftime("%Y-%m-%dT%H:%M")},
    )
    assert answer.status_code == 201
    [stored] = _keys(in_db)
    assert stored.expires_at.replace(tzinfo=UTC) == when


def test_a_bad_key_form_is_422_naming_the_field_and_stores_nothing(console_as, member, in_db):
    console = console_as(member)
    no_scope = console.post("/console/keys", {"name": "Bare"})
    assert no_scope.status_code == 422
    assert 'aria-describedby="e-scopes"' in no_scope.text
    no_name = console.post("/console/keys", {"name": " ", "scopes": ["items"]})
    assert no_name.status_code == 422
    assert 'aria-describedby="e-name"' in no_name.text
    past = console.post(
        "/console/keys", {"name": "Old", "scopes": ["items"], "expires_at": "2001-01-01T00:00"}
    )
    assert past.status_code == 422
    assert "must be in the future" in past.text
    assert in_db(lambda: count_rows(ApiKey)) == 0


def test_a_member_granting_admin_is_refused(console_as, member, in_db):
    answer = console_as(member).post("/console/keys", {"name": "Sneaky", "scopes": ["admin"]})
    assert answer.status_code == 403
    assert in_db(lambda: count_rows(ApiKey)) == 0


def test_an_admin_may_grant_admin(console_as, admin, in_db):
    console = console_as(admin)
    assert 'value="admin"' in console.get("/console/keys").text
    answer = console.post("/console/keys", {"name": "Ops", "scopes": ["admin"]})
    assert answer.status_code == 201
    assert [key.scopes for key in _keys(in_db)] == [["admin"]]


def test_past_the_limit_the_page_says_to_revoke_one(console_as, member, app, monkeypatch, in_db):
    monkeypatch.setitem(app.config, "API_KEYS_PER_USER", 2)
    console = console_as(member)
    for name in ("first", "second"):
        assert console.post("/console/keys", {"name": name, "scopes": ["items"]}).status_code == 201
    answer = console.post("/console/keys", {"name": "one too many", "scopes": ["items"]})
    assert answer.status_code == 409
    assert "revoke one before creating another" in answer.text
    assert 'value="one too many"' in answer.text  # the form as it was sent
    assert in_db(lambda: count_rows(ApiKey)) == 2


def test_revoking_ends_the_key(console_as, member, anonymous, in_db):
    console = console_as(member)
    created = console.post("/console/keys", {"name": "Short-lived", "scopes": ["todos"]})
    secret = KEY.search(created.text).group(1)
    [stored] = _keys(in_db)
    answer = console.post(f"/console/keys/{stored.id}/revoke")
    assert answer.status_code == 303
    assert _keys(in_db)[0].revoked_at is not None
    page = console.get(answer.headers["Location"])
    assert "The key was revoked" in page.text
    assert "Short-lived" not in page.text
    assert anonymous.get("/api/todos", headers={"X-API-Key": secret}).status_code == 401


def test_another_persons_key_is_404(console_as, member, make_user, in_db):
    console_as(member).post("/console/keys", {"name": "Mine", "scopes": ["items"]})
    [stored] = _keys(in_db)
    other = console_as(make_user())
    assert "Mine" not in other.get("/console/keys").text
    assert other.post(f"/console/keys/{stored.id}/revoke").status_code == 404
    assert _keys(in_db)[0].revoked_at is None
