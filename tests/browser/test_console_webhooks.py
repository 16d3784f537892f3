"""Webhook events in a real browser: replay a failed event and see it processed (with the
mouse and with the keyboard alone), every failed one matching a filter, payloads that
try to run a script shown as text, and no webhook page for a member."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
import pytest
from playwright.sync_api import Page, expect

from backoffice.extensions import db
from backoffice.webhooks.models import WebhookEvent

#: Payloads that would open a dialog if a page let them run.
XSS_TYPE = "<img src=x onerror=alert('type')>"
XSS_NOTE = "</pre><script>alert('payload')</script>"


@pytest.fixture
def failed_event(in_db, tmp_path):
    """`failed_event(**payload)`: a failed event of the test worker's `slow` type (it
    succeeds when replayed, writing to a trace file), as the worker leaves a failure."""

    def add(event_type: str = "slow", **extra: Any) -> uuid.UUID:
        trace = tmp_path / f"trace-{uuid.uuid4().hex}.txt"
        trace.touch()
        payload = {"type": event_type, "trace": str(trace), **extra}

        def store() -> uuid.UUID:
            event = WebhookEvent(
                source="acme",
                delivery_id=uuid.uuid4().hex,
                event_type=event_type,
                payload=payload,
                raw_body=orjson.dumps(payload),
                status="failed",
                attempts=5,
                last_error="ConnectionError: the partner's API did not answer",
            )
            db.session.add(event)
            db.session.commit()
            return event.id

        return in_db(store)

    return add


def status_of(in_db, event_id: uuid.UUID) -> str:
    return str(in_db(lambda: db.session.get(WebhookEvent, event_id).status))


@pytest.mark.screenshots
def test_replay_a_failed_event_and_see_it_processed(
    page: Page, console_server, sign_in, failed_event, in_db, check_accessibility, screenshot
):
    event_id = failed_event(note="a parcel was lost")
    failed_event()
    sign_in(page, console_server.admin.email, console_server.admin.password)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Webhook events")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page.locator("tbody tr")).to_have_count(2)
    check_accessibility(page)
    screenshot(page, "console-webhooks")
    page.goto(f"/console/webhooks/{event_id}")
    expect(page.locator("pre")).to_contain_text('"note": "a parcel was lost"')
    check_accessibility(page)
    page.get_by_role("button", name="Replay", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("The event was sent to be processed again.")
    # The worker processes it; a reload shows what it became.
    for _ in range(60):
        if status_of(in_db, event_id) == "processed":
            break
        page.wait_for_timeout(500)
    page.reload()
    expect(page.locator(".current dd").first).to_have_text("processed")


def test_replay_with_the_keyboard_alone(page: Page, console_server, failed_event, in_db):
    event_id = failed_event()
    page.goto("/console/sign-in")
    page.keyboard.press("Tab")  # skip link, then the form: reached by Tab alone
    for _ in range(5):
        if page.evaluate("document.activeElement.name") == "email":
            break
        page.keyboard.press("Tab")
    page.keyboard.type(console_server.admin.email)
    page.keyboard.press("Tab")
    page.keyboard.type(console_server.admin.password)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/$"))
    page.goto(f"/console/webhooks/{event_id}")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Replay":
            break
    else:
        pytest.fail("the Replay button is not reachable with Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("The event was sent to be processed again.")
    assert status_of(in_db, event_id) in {"received", "processing", "processed"}


def test_replay_every_failed_event_matching_the_filter(
    page: Page, console_server, sign_in, failed_event, in_db
):
    matching = [failed_event(), failed_event()]
    other = failed_event("never.handled")
    sign_in(page, console_server.admin.email, console_server.admin.password)
    page.goto("/console/webhooks")
    page.get_by_label("Type").fill("slow")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.get_by_role("button", name="Replay every failed event matching this filter").click()
    expect(page.get_by_role("status")).to_have_text(
        "2 failed events matching the filter were sent to be processed again."
    )
    for _ in range(60):
        if [status_of(in_db, e) for e in matching] == ["processed"] * 2:
            break
        page.wait_for_timeout(500)
    assert [status_of(in_db, e) for e in matching] == ["processed"] * 2
    assert status_of(in_db, other) == "failed"


def test_payloads_that_try_to_run_a_script_are_shown_as_text(
    page: Page, console_server, sign_in, failed_event
):
    event_id = failed_event(XSS_TYPE, note=XSS_NOTE)
    sign_in(page, console_server.admin.email, console_server.admin.password)
    page.goto(f"/console/webhooks?type={XSS_TYPE}")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody")).to_contain_text(XSS_TYPE)
    page.goto(f"/console/webhooks/{event_id}")
    expect(page.locator("pre")).to_contain_text(XSS_NOTE)
    expect(page.get_by_role("heading", level=1)).to_contain_text(XSS_TYPE)
    # No dialog opened: the harness fails the test on one (page_problems).


def test_a_member_finds_no_webhook_pages(
    page: Page, console_server, sign_in, failed_event, page_problems
):
    event_id = failed_event()
    member = console_server.make_user()
    sign_in(page, member.email, member.password)
    expect(page.get_by_role("link", name="Webhooks")).to_have_count(0)
    page_problems.allow(r"status of 404 \(Not Found\)")
    for path in ("/console/webhooks", f"/console/webhooks/{event_id}"):
        answer = page.goto(path)
        assert answer is not None
        assert answer.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
