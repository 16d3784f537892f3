"""`flask seed --demo` (issue 21): people, items, orders in every status, todos, jobs and
webhook events, made through the services; once; never in production by accident."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections import Counter

import pytest
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.items.models import Item
from backoffice.jobs.models import Job
from backoffice.orders.models import Order
from backoffice.todos.models import Todo
from backoffice.users.models import User
from backoffice.webhooks.models import WebhookEvent
from tests.support import ROOT, TEST_SECRET_KEY, Account, login, process_environment

SECRET = "whsec_" + base64.b64encode(b"demo-payments-partner-secret-01").decode()
#: The ways a payment source may be allowed to deliver: signed, or unsigned (development).
DELIVERY = {
    "signed": {"WEBHOOK_SECRETS": json.dumps({"default": SECRET})},
    "unsigned": {"WEBHOOK_UNSIGNED_SOURCES": "default"},
}


@pytest.fixture(params=sorted(DELIVERY))
def seed(request, app, make_app, database_url, queue_settings):
    """Run `flask seed --demo` (and its arguments) on the test's database, as a command."""
    seeding_app = make_app(DATABASE_URL=database_url, **queue_settings, **DELIVERY[request.param])

    def run(*arguments: str):
        return seeding_app.test_cli_runner().invoke(args=["seed", "--demo", *arguments])

    return run


def by_status(model: type) -> Counter[str]:
    return Counter(str(status) for status in db.session.scalars(select(model.status)))


def test_demo_seeds_every_status_through_the_services(seed, in_db, anonymous):
    result = seed()

    assert result.exit_code == 0, result.output
    assert in_db(lambda: by_status(Order)) == {
        "pending": 2,
        "paid": 1,
        "fulfilled": 2,
        "cancelled": 1,
    }
    assert in_db(lambda: by_status(WebhookEvent)) == {"processed": 3, "failed": 2, "ignored": 1}
    jobs = in_db(lambda: by_status(Job))
    assert jobs["failed"] == 1
    assert jobs["succeeded"] >= 2
    # The fourth waits for a worker; one that another test of this process started may
    # have run it already.
    assert jobs["queued"] + jobs["running"] + jobs["succeeded"] == 3
    assert in_db(lambda: Counter(db.session.scalars(select(Todo.done)))) == {True: 2, False: 2}
    assert in_db(lambda: Counter(str(role) for role in db.session.scalars(select(User.role)))) == {
        "member": 2,
        "admin": 1,
    }
    # Stock went where the orders took it: 2 + 4 beans and milk, the cancelled descaler back.
    stock = in_db(
        lambda: {
            row.name: row.quantity for row in db.session.execute(select(Item.name, Item.quantity))
        }
    )
    assert stock["Espresso beans, 1 kg"] == 38
    assert stock["Oat milk, 1 l"] == 120 - 6 - 4
    assert stock["Descaler"] == 8
    # The failures say why, as a partner's mistakes would.
    errors = in_db(
        lambda: sorted(
            db.session.scalars(
                select(WebhookEvent.last_error).where(WebhookEvent.status == "failed")
            )
        )
    )
    assert "which was cancelled" in errors[0] + errors[1]
    assert "which does not exist" in errors[0] + errors[1]

    assert "orders: 1 cancelled, 2 fulfilled, 1 paid, 2 pending" in result.output
    assert "webhook events: 2 failed, 1 ignored, 3 processed" in result.output
    for email, password in (
        ("admin@demo.example.com", "demo-admin-password"),
        ("ada@demo.example.com", "demo-ada-password"),
    ):
        assert f"{email:<24} {password}" in result.output
        login(anonymous, Account(uuid.uuid4(), email, password, "admin"))


def test_a_second_run_adds_nothing(seed, in_db):
    first = seed()
    assert first.exit_code == 0, first.output

    # The rows themselves, not their statuses: a worker of the suite may still be running
    # the queued job between the two runs.
    def rows() -> list[set[uuid.UUID]]:
        return [set(db.session.scalars(select(m.id))) for m in (Order, WebhookEvent, Job, Item)]

    made = in_db(rows)

    second = seed()

    assert second.exit_code == 0, second.output
    assert second.output == "Already seeded (admin@demo.example.com exists): nothing added.\n"
    assert in_db(rows) == made
    assert in_db(lambda: db.session.scalar(select(db.func.count()).select_from(User))) == 3


def test_a_source_that_cannot_deliver_payments_is_refused_before_anything_is_made(
    app, make_app, database_url, queue_settings, in_db
):
    seeding_app = make_app(DATABASE_URL=database_url, **queue_settings)

    result = seeding_app.test_cli_runner().invoke(args=["seed", "--demo"])

    assert result.exit_code == 1
    assert "Demo data not seeded: the demo's payments arrive as webhook source 'default'" in (
        result.output
    )
    assert in_db(lambda: db.session.scalars(select(User.id)).all()) == []
    assert in_db(lambda: db.session.scalars(select(Item.id)).all()) == []


def production(
    database_url: str, queue_settings: dict[str, str], tmp_path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    """`flask seed --demo` as a production deployment would run it."""
    env = process_environment(
        CELERY_BROKER_URL=queue_settings["CELERY_BROKER_URL"],
        APP_ENV="production",
        SECRET_KEY=TEST_SECRET_KEY,
        DATABASE_URL=database_url,
        TRUSTED_HOSTS="api.example.com",
        WEBHOOK_UNSIGNED_SOURCES="default",
        INSTANCE_PATH=str(tmp_path),
        LOG_LEVEL="WARNING",
    )
    return subprocess.run(  # noqa: S603 (our own command)
        [sys.executable, "-m", "flask", "seed", "--demo", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_is_refused_without_the_explicit_flag(
    app, database_url, queue_settings, tmp_path, in_db
):
    result = production(database_url, queue_settings, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "Error: APP_ENV is production" in result.stderr
    assert "--allow-production" in result.stderr
    assert in_db(lambda: db.session.scalars(select(User.id)).all()) == []


def test_production_with_the_flag_gets_random_passwords(
    app, database_url, queue_settings, tmp_path, anonymous
):
    result = production(database_url, queue_settings, tmp_path, "--allow-production")

    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if "admin@demo.example.com" in line]
    password = line.split()[-1]
    assert password != "demo-admin-password"
    assert "demo-admin-password" not in result.stdout
    login(anonymous, Account(uuid.uuid4(), "admin@demo.example.com", password, "admin"))
