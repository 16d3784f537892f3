"""`flask seed --demo`: people, inventory, orders in every status, todos, jobs and webhook
events (some failed), so the console, the docs and a newcomer's first look show
something real.

Everything is made through the capabilities' services, as a request or a worker would
make it: stock is taken by orders, orders are paid by `payment_success` events delivered
through the webhook gateway (signed when the source has a secret) and processed by the
leased-work engine, jobs run their runners. The work is run here, in this process
(`work.process`), so the data is complete without a worker; a worker that is running
takes some of it first, and this waits for its outcome.

Run twice, it adds nothing the second time: the demo admin, made last, says a run
finished (`already_seeded`).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from backoffice import work
from backoffice.extensions import db
from backoffice.items import service as items
from backoffice.jobs import service as jobs
from backoffice.orders import service as orders
from backoffice.todos import service as todos
from backoffice.users import service as users
from backoffice.users.schemas import UserPatch
from backoffice.webhooks import service as webhooks

#: The webhook source the demo's payments arrive from.
SOURCE = "default"
#: How long to wait for a worker that took a demo row first to record its outcome.
OUTCOME_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class DemoUser:
    name: str
    email: str
    role: str
    #: The password in development and testing: known, so the docs can log in with it.
    password: str


#: The members first; the admin last: its existence says that a run finished.
MEMBERS = (
    DemoUser("Ada Lovelace", "ada@demo.example.com", "member", "demo-ada-password"),
    DemoUser("Grace Hopper", "grace@demo.example.com", "member", "demo-grace-password"),
)
ADMIN = DemoUser("Demo Admin", "admin@demo.example.com", "admin", "demo-admin-password")

#: (name, description, quantity)
ITEMS = (
    ("Espresso beans, 1 kg", "Single-origin, medium roast", 40),
    ("Oat milk, 1 l", "Barista edition", 120),
    ("Paper cups, 100", "Compostable, 8 oz", 60),
    ("Ceramic mug", "Logo on both sides", 25),
    ("Descaler", "For the big machine, monthly", 8),
    ("Grinder burrs", "Spare set", 2),
    ("Tea sampler", "Twelve kinds", 0),
)

#: (member index, item index, quantity, what becomes of the order)
ORDERS = (
    (0, 0, 2, "pending"),
    (1, 1, 6, "pending"),
    (0, 2, 3, "paid"),
    (1, 3, 1, "fulfilled"),
    (0, 1, 4, "fulfilled"),
    (1, 4, 1, "cancelled"),
)

TODOS = (
    (0, "Count the cups in the back room", True),
    (0, "Ask the roaster about the autumn blend", False),
    (1, "Reorder descaler before the 1st", False),
    (1, "Check the grinder burrs", True),
)

TEXT = (
    "The espresso was excellent. The queue was long, but the staff were quick! "
    "Would the oat milk run out again? Probably not: the order went in on Monday."
)


@dataclass
class Seeded:
    """What one run made: the accounts (with the passwords to show once) and counts."""

    accounts: list[tuple[DemoUser, str]] = field(default_factory=list)
    counts: dict[str, Counter[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Caller:
    """A person calling a service, as a view would pass `current_principal()`."""

    user_id: uuid.UUID
    is_admin: bool = False


class DemoRefused(Exception):
    """The demo cannot be seeded here; the message says why and what to do."""


def already_seeded() -> bool:
    return users.find_by_email(ADMIN.email) is not None


def seed_demo(random_passwords: bool = False) -> Seeded:
    """Make the demo data; `random_passwords` for a deployment, where the known ones would
    be a way in. The caller checks `already_seeded()` first."""
    if not webhooks.accepts_deliveries(SOURCE):
        raise DemoRefused(
            f"the demo's payments arrive as webhook source {SOURCE!r}, which has no secret "
            "and may not deliver unsigned: set WEBHOOK_SECRETS or WEBHOOK_UNSIGNED_SOURCES"
        )
    seeded = Seeded()
    people = [_person(member, random_passwords, seeded) for member in MEMBERS]
    stock = [
        items.create_item(name, description, quantity).id for name, description, quantity in ITEMS
    ]
    seeded.counts["items"] = Counter({"created": len(stock)})
    seeded.counts["todos"] = Counter()
    for who, task, done in TODOS:
        todos.create_todo(people[who], task, done)
        seeded.counts["todos"]["done" if done else "open"] += 1
    seeded.counts["orders"], seeded.counts["webhook events"] = _orders(people, stock)
    seeded.counts["jobs"] = _jobs(people)
    _person(ADMIN, random_passwords, seeded)
    return seeded


def _person(user: DemoUser, random_password: bool, seeded: Seeded) -> uuid.UUID:
    """The demo user, made now (its password recorded to show once) or found from a run
    that stopped halfway."""
    found = users.find_by_email(user.email)
    if found is not None:
        return found.id
    password = secrets.token_urlsafe(12) if random_password else user.password
    # The role as the API reads it (the users capability's own type, through its schema).
    role = UserPatch.model_validate({"role": user.role}).role
    assert role is not None
    made = users.create_user(user.name, user.email, password, role)
    seeded.accounts.append((user, password))
    return made.id


def _orders(people: list[uuid.UUID], stock: list[uuid.UUID]) -> tuple[Counter[str], Counter[str]]:
    """Place every order, then take each where it is going: paid and fulfilled ones by
    a `payment_success` event, cancelled ones by their owner. Two payments fail, as a
    partner's mistakes would: one for the cancelled order, one for an order that never
    existed."""
    statuses: Counter[str] = Counter()
    events: Counter[str] = Counter()
    run = uuid.uuid4().hex[:8]
    for n, (who, item, quantity, fate) in enumerate(ORDERS):
        order = orders.place_order(people[who], [(stock[item], quantity)], note="Demo order")
        order_id = order.id
        if fate in ("paid", "fulfilled"):
            payment = {"type": "payment_success", "order_id": str(order_id)}
            events[_deliver({**payment, "payment_id": f"pay_demo_{n}"}, f"demo_{run}_{n}")] += 1
        if fate == "fulfilled":
            orders.fulfil_order(order_id)
        if fate == "cancelled":
            orders.cancel_order(order_id, _Caller(people[who]))
            late = {"type": "payment_success", "order_id": str(order_id)}
            events[_deliver(late, f"demo_{run}_{n}_late")] += 1
        statuses[fate] += 1
    nowhere = {"type": "payment_success", "order_id": str(uuid.uuid4())}
    events[_deliver(nowhere, f"demo_{run}_nowhere")] += 1
    events[_deliver({"type": "refund_requested", "amount": 12}, f"demo_{run}_refund")] += 1
    return statuses, events


def _deliver(payload: dict[str, Any], delivery_id: str) -> str:
    """Deliver one event through the gateway and process it; the status it ended in."""
    event_id, _ = webhooks.deliver(SOURCE, payload, delivery_id)
    return _run_now(webhooks.QUEUE, event_id)


def _jobs(people: list[uuid.UUID]) -> Counter[str]:
    """Two jobs that succeed, one that fails (its input lacks the text to analyse, as a
    job queued by an older client might) and one left queued for a worker."""
    outcomes: Counter[str] = Counter()
    for job_type, job_input in (
        ("text-analysis", {"text": TEXT}),
        ("inventory-report", {}),
        ("text-analysis", {}),
    ):
        job = jobs.create_job(people[0], job_type, job_input)
        outcomes[_run_now(jobs.QUEUE, job.id)] += 1
    jobs.create_job(people[1], "inventory-report", {})
    outcomes["queued"] += 1
    return outcomes


def _run_now(queue: work.WorkQueue, row_id: uuid.UUID) -> str:
    """Run the row here, or wait for the worker that took it first; its final status."""
    work.process(queue.name, row_id)
    column = queue.table.c.status
    deadline = time.monotonic() + OUTCOME_WAIT_SECONDS
    while True:
        status = str(db.session.scalar(select(column).where(queue.table.c.id == row_id)))
        db.session.rollback()  # end the read, so the next one sees the worker's commit
        if status not in (queue.waiting, queue.running):
            return status
        if time.monotonic() > deadline:
            raise DemoRefused(f"{queue.name} {row_id} is still {status}: is a worker stuck?")
        time.sleep(0.2)
