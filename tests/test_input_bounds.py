"""What a request may carry, answered the same on SQLite and PostgreSQL: ids and text
bounded and checked on every path (a 4xx naming the field, never a 500 from the
database), U+0000 refused everywhere, a streamed body held to the size limit, and links
built only from trusted host names.
"""

from __future__ import annotations

import base64
import io
import json
import uuid

import orjson
import pytest

from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.jobs.models import Job
from backoffice.orders.models import Order
from backoffice.todos.models import Todo
from backoffice.users.models import User
from backoffice.webhooks.models import WebhookEvent
from tests.support import PASSWORD, assert_problem, count_rows, signed_headers

SECRET = "whsec_" + base64.b64encode(b"bounds-shared-secret-0123456789").decode()


@pytest.fixture
def gateway(make_app, database_url, queue_settings):
    """`acme` signs its deliveries; `default` may deliver unsigned."""
    return make_app(
        DATABASE_URL=database_url,
        WEBHOOK_SECRETS=json.dumps({"acme": SECRET}),
        WEBHOOK_UNSIGNED_SOURCES="default",
        **queue_settings,
    ).test_client()


def deliver(client, body: bytes, msg_id: str | None = None):
    """POST `body` to the signed source, signed with a fresh id unless one is given."""
    headers = signed_headers(SECRET, body, msg_id)
    return client.post(
        "/api/webhooks/acme", data=body, headers=headers, content_type="application/json"
    )


def stored_events(in_db) -> int:
    return int(in_db(lambda: count_rows(WebhookEvent)))


# --- webhook deliveries: every id and text field bounded, signed or not -------------


def test_a_signed_delivery_with_an_overlong_webhook_id_is_400_and_not_stored(gateway, in_db):
    response = deliver(gateway, b'{"type": "ping"}', msg_id="m" * 256)
    body = assert_problem(response, 400, "webhook-id")
    assert "255" in body["errors"][0]["message"]
    assert stored_events(in_db) == 0
    assert deliver(gateway, b'{"type": "ping"}', msg_id="m" * 255).status_code == 201


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "pay\u0000ment"}, "type"),
        ({"type": "t" * 201}, "type"),
        ({"type": "line\nbreak"}, "type"),
        ({"type": {"name": "nested"}}, "type"),
        ({"event": "e" * 201}, "event"),
        ({"type": "ok", "event": "e\u0000"}, "event"),
        ({"type": ""}, "type"),
        ({"type": True}, "type"),
        ({"type": 2**63}, "type"),
        ({"type": "ok", "id": {"nested": 1}}, "id"),
        ({"type": "ok", "id": "i" * 256}, "id"),
    ],
    ids=[
        "nul-type",
        "long-type",
        "control-type",
        "object-type",
        "long-event",
        "nul-event-beside-type",
        "empty-type",
        "boolean-type",
        "huge-integer-type",
        "object-id",
        "long-id-even-when-signed",
    ],
)
def test_a_signed_delivery_with_a_bad_text_field_is_400_naming_it(gateway, in_db, payload, field):
    assert_problem(deliver(gateway, orjson.dumps(payload)), 400, field)
    assert stored_events(in_db) == 0


def test_a_payload_is_stored_as_sent_with_nul_anywhere_but_the_fields_read_as_text(
    gateway, in_db, as_user, admin
):
    """The payload column is JSON on both databases, which holds the `\\u0000` escape."""
    payload = {"type": 7.0, "data": {"lines": [{"note": "a\u0000b"}]}, "key\u0000": [1]}
    response = deliver(gateway, orjson.dumps(payload))
    assert response.status_code == 201
    event = as_user(admin).get(f"/api/webhooks/events/{response.json['id']}").json
    assert event["payload"] == payload
    assert event["event_type"] == "7"


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"id": "i" * 256}, "id"), ({"id": "evt\u00001"}, "id"), ({"id": "evt\t1"}, "id")],
    ids=["long", "nul", "control"],
)
def test_an_unsigned_delivery_with_a_bad_id_is_400_never_cut_to_fit(gateway, in_db, payload, field):
    response = gateway.post("/api/webhook", json={**payload, "type": "ping"})
    assert_problem(response, 400, field)
    assert stored_events(in_db) == 0


def test_unsigned_ids_that_share_a_long_prefix_stay_two_events(gateway, in_db):
    """Cutting ids to the column's length would have made the second a "duplicate"."""
    prefix = "p" * 250
    first = gateway.post("/api/webhook", json={"id": prefix + "-0001", "type": "ping"})
    second = gateway.post("/api/webhook", json={"id": prefix + "-0002", "type": "ping"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert stored_events(in_db) == 2


# --- U+0000 refused in every body, query string and header ----------------------


#: How a field of one member of a union is named: the member, then the path.
TEXT = "text-analysis.input.text"
ONE_LINE = {"item_id": str(uuid.uuid4()), "quantity": 1}
NUL_BODIES = [
    ("POST", "/api/items", {"name": "Wid\u0000get"}, "name", Item),
    ("POST", "/api/todos", {"task": "call\u0000"}, "task", Todo),
    ("POST", "/api/jobs", {"type": "text-analysis", "input": {"text": "a\u0000b"}}, TEXT, Job),
    ("POST", "/api/orders", {"lines": [ONE_LINE], "note": "\u0000"}, "note", Order),
    ("POST", "/api/auth/api-keys", {"name": "k\u0000"}, "name", None),
]


@pytest.mark.parametrize(
    ("method", "path", "payload", "field", "model"),
    NUL_BODIES,
    ids=[f"{m} {p}" for m, p, *_ in NUL_BODIES],
)
def test_nul_in_a_json_body_is_422_naming_the_field_and_stores_nothing(
    client, in_db, method, path, payload, field, model
):
    before = in_db(lambda: count_rows(model)) if model else 0
    body = assert_problem(client.open(path, method=method, json=payload), 422, field)
    assert body["errors"][0]["message"].endswith(("control characters", "U+0000 (NUL)"))
    if model:
        assert in_db(lambda: count_rows(model)) == before


def test_nul_in_a_sign_up_is_422_even_in_a_password(anonymous, in_db):
    before = in_db(lambda: count_rows(User))
    response = anonymous.post(
        "/api/users",
        json={"name": "Nul", "email": "nul@example.com", "password": "pass\u0000word-long"},
    )
    assert_problem(response, 422, "password")
    assert in_db(lambda: count_rows(User)) == before


def test_nul_in_a_login_is_422_as_json_or_as_a_form(anonymous, member):
    as_json = anonymous.post(
        "/api/auth/token", json={"email": f"{member.email}\u0000", "password": PASSWORD}
    )
    assert_problem(as_json, 422, "email")
    as_form = anonymous.post(
        "/api/auth/token", data={"username": f"{member.email}\u0000", "password": PASSWORD}
    )
    assert_problem(as_form, 422, "username")


def test_nul_in_a_query_string_is_400(client, as_user, admin):
    assert_problem(client.get("/api/items?q=a%00b"), 400, "q")
    events = as_user(admin).get("/api/webhooks/events?source=a%00b")
    assert_problem(events, 400, "source")


def test_nul_in_a_header_is_400_before_any_lookup(anonymous):
    response = anonymous.get("/api/items", headers={"X-API-Key": "bo_1234567\u0000_secretsecret"})
    assert_problem(response, 400)


# --- bodies streamed without Content-Length ---------------------------------------


def chunked(client, path: str, body: bytes):
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.fixture
def small_limit(make_app, database_url, queue_settings):
    """An app taking bodies of at most 200 bytes; `default` may deliver unsigned."""
    return make_app(
        DATABASE_URL=database_url,
        MAX_CONTENT_LENGTH="200",
        WEBHOOK_UNSIGNED_SOURCES="default",
        **queue_settings,
    ).test_client()


def test_a_chunked_body_over_the_limit_is_413_as_with_content_length(small_limit, in_db):
    too_long = orjson.dumps({"name": "n", "email": "big@example.com", "password": "p" * 300})
    assert_problem(chunked(small_limit, "/api/users", too_long), 413)
    assert_problem(
        small_limit.post("/api/users", data=too_long, content_type="application/json"), 413
    )
    event = orjson.dumps({"id": "evt_big", "type": "ping", "padding": "x" * 300})
    assert_problem(chunked(small_limit, "/api/webhook", event), 413)
    assert stored_events(in_db) == 0


def test_a_chunked_body_within_the_limit_is_read_whole(small_limit):
    exactly = orjson.dumps({"id": "evt_fit", "type": "ping", "pad": ""})
    exactly = exactly[:-2] + b"x" * (200 - len(exactly)) + b'"}'
    assert len(exactly) == 200
    assert chunked(small_limit, "/api/webhook", exactly).status_code == 201
    user = orjson.dumps({"name": "Chunked", "email": "chunked@example.com", "password": PASSWORD})
    assert chunked(small_limit, "/api/users", user).status_code == 201


# --- hosts and links ----------------------------------------------------------------


def test_an_untrusted_host_is_400_and_never_reaches_a_link(client):
    for n in range(2):
        client.post("/api/items", json={"name": f"Linked {n}"})
    response = client.get("/api/items?limit=1", headers={"Host": "evil.example"})
    assert_problem(response, 400)
    assert "Link" not in response.headers
    trusted = client.get("/api/items?limit=1")
    assert trusted.headers["Link"].startswith("<http://localhost/api/items?")


def test_links_use_the_configured_host_names(make_app, database_url, as_user, member):
    app = make_app(DATABASE_URL=database_url, TRUSTED_HOSTS="api.example.com,.example.org")
    client = app.test_client()
    client.environ_base.update(as_user(member).environ_base)
    for n in range(2):
        client.post("/api/items", json={"name": f"Hosted {n}"}, headers={"Host": "api.example.com"})
    listed = client.get("/api/items?limit=1", headers={"Host": "api.example.com"})
    assert listed.headers["Link"].startswith("<http://api.example.com/api/items?limit=1&cursor=")
    sub = client.get("/api/items?limit=1", headers={"Host": "eu.example.org:8443"})
    assert sub.headers["Link"].startswith("<http://eu.example.org:8443/api/items?")
    assert_problem(client.get("/api/items?limit=1", headers={"Host": "localhost"}), 400)


# --- /users/me: every method OPTIONS advertises works --------------------------------


def test_users_me_answers_every_method_options_advertises(client, member, in_db):
    allowed = set(client.options("/api/users/me").headers["Allow"].split(", "))
    assert {"GET", "PATCH", "DELETE"} <= allowed
    patched = client.patch("/api/users/me", json={"name": "Renamed Me"})
    assert patched.status_code == 200
    assert (patched.json["id"], patched.json["name"]) == (str(member.id), "Renamed Me")
    assert client.get("/api/users/me").json["name"] == "Renamed Me"
    assert client.delete("/api/users/me").status_code == 204
    assert in_db(lambda: db.session.get(User, member.id)) is None
    assert_problem(client.get("/api/users/me"), 401)  # and its tokens ended with it
