"""`bench.profile`'s core on a few requests: every scenario measured against a real app,
a broken one refused, components that add up, and a call count that does not move."""

from __future__ import annotations

import base64
import gc
import json
import time
import uuid
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import jwt.api_jws
import psycopg.connection
import pytest
from sqlalchemy import select
from werkzeug.test import EnvironBuilder

from backoffice import attempts, config, work
from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.orders.models import Order
from backoffice.webhooks.models import WebhookEvent
from bench import profile
from tests.support import count_rows, login, signed_headers

SECRET = "whsec_" + base64.b64encode(b"profile-test-webhook-secret-0123").decode()
REQUESTS = 8


@pytest.fixture
def target(app, make_app, database_url, queue_settings, member, client):
    """An app that takes signed deliveries from `acme`, and a member's token and item."""
    gateway = make_app(
        DATABASE_URL=database_url,
        WEBHOOK_SECRETS=json.dumps({"acme": SECRET}),
        LOGIN_RATE_LIMIT=profile.LOGIN_LIMIT,
        AUTH_CACHE_MAX_AGE=profile.CACHE_MAX_AGE,
        **queue_settings,
    )
    created = client.post("/api/items", json={"name": "Widget", "quantity": 3})
    assert created.status_code == 201
    token = login(gateway.test_client(), member)["access_token"]
    # As the profile runs: the deliveries' messages sent in the measuring thread.
    work.install_sender(gateway, work.Sender(gateway, background=False))
    found = profile.stock_up(gateway, profile.Target(created.json["id"], token, "acme", SECRET))
    return gateway, found


def test_every_scenario_is_measured_and_its_components_add_up(target, in_db):
    gateway, found = target
    results = [
        profile.measure(gateway, scenario, REQUESTS, work.sender(gateway), send_every=3)
        for scenario in profile.scenarios(found).values()
    ]
    assert [r.scenario for r in results] == [
        "item",
        "create",
        "list",
        "order",
        "webhook",
        "refused",
    ]
    for result in results:
        assert result.requests == REQUESTS
        assert result.us_per_request > 0
        assert result.calls_per_request > 0
        assert set(result.components) == set(profile.LABELS)
        assert all(us >= 0 for us in result.components.values())
        assert sum(result.components.values()) == pytest.approx(result.us_per_request)
        assert result.components["ours"] > 0
    # Each request reached the database: warm-up, timed and profiled creates and deliveries.
    assert in_db(lambda: count_rows(Item)) == 2 + 3 * REQUESTS  # and the orders' stock
    assert in_db(lambda: count_rows(Order)) == 3 * REQUESTS
    assert in_db(lambda: count_rows(WebhookEvent)) == 3 * REQUESTS
    # ... and every delivery was sent (and stamped) within the measured requests.
    unsent = select(WebhookEvent).where(WebhookEvent.enqueued_at.is_(None))
    assert in_db(lambda: db.session.scalars(unsent).all()) == []
    table = profile.table(results)
    assert table.count("\n") == len(profile.COMPONENTS) + 3
    assert "| **total** |" in table


def test_the_call_count_is_the_same_in_two_runs(target, monkeypatch):
    # A refused login asks the store again once its memory of the full window (a second)
    # has passed: with the clock held, both runs answer every refusal from memory.
    now = time.time()
    monkeypatch.setattr(attempts, "time", SimpleNamespace(time=lambda: now))
    gateway, found = target
    # A garbage collection in the middle of a run calls weakref callbacks and finalizers
    # in Python, which cProfile counts: held off here, so only the requests' own calls are.
    gc.collect()
    gc.disable()
    try:
        for scenario in profile.scenarios(found).values():
            # Once first, unchecked: a one-time cost (a notification a listener delivered
            # meanwhile, a first statement prepared) lands in neither run compared.
            profile.measure(gateway, scenario, REQUESTS, work.sender(gateway))
            first = profile.measure(gateway, scenario, REQUESTS, work.sender(gateway))
            second = profile.measure(gateway, scenario, REQUESTS, work.sender(gateway))
            assert first.calls_per_request == second.calls_per_request, scenario.name
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("broken", "status"),
    [
        (lambda found: replace(found, access_token="not-a-token"), 401),
        (lambda found: replace(found, item_id=str(uuid.uuid4())), 404),
    ],
    ids=["bad-token", "missing-item"],
)
def test_a_scenario_answering_errors_fails_instead_of_reporting(target, broken, status):
    gateway, found = target
    item = profile.scenarios(broken(found))["item"]
    with pytest.raises(profile.UnexpectedAnswer, match=f"answered {status}, not 200"):
        profile.measure(gateway, item, REQUESTS)


def test_a_redelivered_webhook_is_a_failure_not_an_intake(target, in_db):
    """The intake scenario must measure new deliveries: a duplicate answers 200, not 201."""
    gateway, _found = target
    body = b'{"type": "bench.event", "amount": 42}'
    headers = signed_headers(SECRET, body, msg_id="msg_always_the_same")

    def same_delivery() -> dict[str, Any]:
        builder = EnvironBuilder(
            "/api/webhooks/acme",
            profile.BASE_URL,
            method="POST",
            headers=headers,
            data=body,
            content_type="application/json",
        )
        return builder.get_environ()

    replayed = profile.Scenario("webhook", "POST /api/webhooks/acme", 201, same_delivery)
    with pytest.raises(profile.UnexpectedAnswer, match="answered 200, not 201"):
        profile.measure(gateway, replayed, REQUESTS)
    assert in_db(lambda: count_rows(WebhookEvent)) == 1


def test_functions_go_to_the_component_their_code_lives_in():
    assert profile.located((jwt.api_jws.__file__, 1, "decode")) == "jwt"
    assert profile.located((config.__file__, 1, "load_settings")) == "ours"
    assert profile.located(("~", 0, "<built-in method orjson.dumps>")) == "json"
    psycopg = "<method 'execute' of 'psycopg_binary._psycopg.PGconn' objects>"
    assert profile.located(("~", 0, psycopg)) == "database"
    # Charged to their callers: builtins, the standard library, this harness.
    assert profile.located(("~", 0, "<built-in method builtins.len>")) is None
    assert profile.located((base64.__file__, 1, "b64decode")) is None
    assert profile.located((profile.__file__, 1, "measure")) is None


def test_code_outside_the_components_is_charged_to_its_callers():
    """A builtin called from PyJWT and from our code splits its own time between them, by
    the time each caller's calls took; the profiler's overhead per call is taken out first."""
    from_jwt = (jwt.api_jws.__file__, 1, "decode")
    ours = (config.__file__, 1, "load_settings")
    harness = (profile.__file__, 1, "run")
    builtin = ("~", 0, "<built-in method builtins.len>")
    stats = {
        harness: (1, 1, 0.5, 10.0, {}),
        from_jwt: (1, 1, 1.0, 4.0, {harness: (1, 1, 1.0, 4.0)}),
        ours: (1, 1, 2.0, 3.0, {harness: (1, 1, 2.0, 3.0)}),
        builtin: (2, 2, 4.0, 4.0, {from_jwt: (1, 1, 3.0, 3.0), ours: (1, 1, 1.0, 1.0)}),
    }
    seconds = profile.attribute(stats)
    assert (seconds["jwt"], seconds["ours"], seconds["other"]) == (4.0, 3.0, 0.5)
    assert sum(seconds.values()) == 7.5
    corrected = profile.attribute(stats, overhead=0.5)
    assert corrected["jwt"] == pytest.approx(0.5 + 3.0 * 0.75)
    assert corrected["ours"] == pytest.approx(1.5 + 3.0 * 0.25)
    assert corrected["other"] == 0.0


def test_time_off_the_cpu_is_taken_out_of_the_functions_that_wait():
    """psycopg's wait holds the wall-clock time a commit waits for PostgreSQL: that is not
    this process's CPU, and must not make the database look expensive."""
    waiting = (psycopg.connection.__file__, 479, "wait")
    ours = (config.__file__, 1, "load_settings")
    stats = {
        ours: (1, 1, 2.0, 5.0, {}),
        waiting: (1, 1, 3.0, 3.0, {ours: (1, 1, 3.0, 3.0)}),
    }
    assert profile.waits(waiting)
    assert not profile.waits(ours)
    seconds = profile.attribute(stats, waiting=2.5)
    assert (seconds["database"], seconds["ours"]) == (pytest.approx(0.5), 2.0)
    assert profile.attribute(stats, waiting=10.0)["database"] == 0.0
