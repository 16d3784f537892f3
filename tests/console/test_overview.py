"""The overview: readiness for everyone; the queues and the last day's charts for admins
only, drawn as SVG with their numbers in tables, escaped, and without inline style."""

from __future__ import annotations

import re
from datetime import timedelta

from backoffice import activity
from backoffice.database import utcnow
from backoffice.extensions import db
from backoffice.webhooks.models import EventStatus, WebhookEvent


def test_a_member_sees_readiness_and_their_own_lists_and_nothing_global(console_as, member):
    page = console_as(member).get("/console/")
    assert page.status_code == 200
    assert "Readiness" in page.text
    assert "database" in page.text
    assert "Your items" in page.text
    assert "Queues" not in page.text
    assert "<svg" not in page.text


def test_an_admin_sees_the_queues_and_charts_before_any_tally(console_as, admin):
    page = console_as(admin).get("/console/")
    assert page.status_code == 200
    assert "No worker has counted the queues yet" in page.text
    assert page.text.count("Nothing recorded in this period yet.") == 4
    assert page.text.count("<table>") == 5  # readiness, and one per chart


def test_an_admin_sees_what_the_workers_tallied_as_charts_and_tables(app, console_as, admin):
    now = utcnow()
    with app.app_context():
        db.session.add_all(
            [
                WebhookEvent(
                    source="s",
                    delivery_id=f"d{n}",
                    event_type="<script>x</script>",
                    payload={},
                    raw_body=b"{}",
                    status=status,
                    finished_at=now,
                )
                for n, status in enumerate([EventStatus.PROCESSED] * 3 + [EventStatus.FAILED])
            ]
            + [
                WebhookEvent(
                    source="s",
                    delivery_id="w",
                    payload={},
                    raw_body=b"{}",
                    status=EventStatus.RECEIVED,
                    created_at=now - timedelta(minutes=2),
                )
            ]
        )
        db.session.commit()
        activity.tally(now)
        _, snapshot = activity.latest_snapshots("queue:")
    page = console_as(admin).get("/console/")
    assert page.status_code == 200
    text = page.text
    # The session's Celery worker, when one runs in this process, may take the received
    # row between the commit and the tally: the page shows what the tally saw, and the
    # failed row, which no worker retries by itself, is there whatever happened.
    webhooks = {label: int(value) for label, value in snapshot["queue:webhooks"].items()}
    assert webhooks["failed"] == 1
    assert webhooks["received"] + webhooks["processing"] <= 1
    labels = ("received", "processing", "failed")
    shown = ", ".join(f"{label}: {webhooks[label]}" for label in labels)
    assert shown in text
    if webhooks["received"]:
        assert re.search(r"\d+ s \(since <time", text)  # the oldest waiting row's age
    assert 'role="img"' in text
    assert "<title" in text
    assert (
        "Webhook events finished per hour, by outcome: in all, processed 3, ignored 0, failed 1"
        in text
    )
    hour = now.strftime("%H:00")
    assert re.search(
        rf'<th scope="row">{hour}</th>'
        r'<td class="number">3</td><td class="number">0</td><td class="number">1</td>',
        text,
    )
    assert "style=" not in text
    assert "<script>x" not in text
