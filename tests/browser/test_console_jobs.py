"""Jobs in a real browser: a running job's progress moves by itself, Cancel stops it
(the worker's run ends at its next progress report), a finished job is replayed, and the
report is downloaded."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from backoffice import work
from backoffice.extensions import db
from backoffice.jobs import service as jobs
from backoffice.jobs.models import Job
from backoffice.transactions import commit


@pytest.fixture
def slow_job(app, tmp_path) -> Callable[[uuid.UUID, int], tuple[uuid.UUID, Path]]:
    """`slow_job(owner, steps)`: a test-only `slow` job (tests.testing_worker) of `steps`
    steps of 0.1 s, each one a progress report, accepted as `create_job` accepts one and
    run by the session's worker, the one the console's server sends to. Its trace file
    says whether the run started and whether it ended."""

    def accept(owner: uuid.UUID, steps: int) -> tuple[uuid.UUID, Path]:
        trace = tmp_path / f"trace-{uuid.uuid4().hex}.txt"
        trace.touch()
        with app.app_context():
            job = Job(
                user_id=owner,
                type="slow",
                input={"trace": str(trace), "steps": steps, "step": 0.1},
                status=jobs.QUEUE.waiting,
            )
            db.session.add(job)
            db.session.flush()
            work.send_after_commit(jobs.QUEUE, job.id)
            commit()
            return job.id, trace

    return accept


def progress_of(page: Page) -> int:
    return int(page.locator("progress").get_attribute("value") or 0)


@pytest.mark.screenshots
def test_cancel_a_running_job_and_see_it_stop(
    page: Page, console_server, sign_in, slow_job, in_db, check_accessibility, screenshot
):
    member = console_server.make_user()
    job_id, trace = slow_job(member.id, 900)  # 90 s if nobody stops it
    sign_in(page, member.email, member.password)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Jobs")
    check_accessibility(page)
    page.get_by_role("link", name="slow").click()
    expect(page.locator("[data-fragment='job'] h2")).to_contain_text("running", timeout=60_000)
    # The progress moves without a reload (console.js refreshes the fragment).
    seen = progress_of(page)
    expect(page.locator("progress")).not_to_have_attribute("value", str(seen))
    assert progress_of(page) > seen
    check_accessibility(page)
    screenshot(page, "console-job")
    page.get_by_role("button", name="Cancel this job").click()
    expect(page.get_by_role("status")).to_have_text("The job was cancelled.")
    expect(page.locator("[data-fragment='job'] h2")).to_contain_text("cancelled")
    expect(page.locator("[data-fragment='job']")).not_to_have_attribute("data-refresh", "/.+/")
    stopped_at = progress_of(page)
    # It stays stopped: the worker's run ended at its next progress report.
    page.wait_for_timeout(2_000)
    page.reload()
    expect(page.locator("[data-fragment='job'] h2")).to_contain_text("cancelled")
    assert progress_of(page) == stopped_at
    assert trace.read_text().split() == ["start"]
    stored = in_db(lambda: db.session.get(Job, job_id))
    assert (stored.status, stored.lease_until, stored.result) == ("cancelled", None, None)


@pytest.mark.screenshots
def test_replay_a_finished_job_and_download_a_report(
    page: Page, console_server, sign_in, in_db, check_accessibility, screenshot
):
    member = console_server.make_user()
    api = console_server.api(member)
    api.post("/api/items", json={"name": "Widget", "quantity": 3}).raise_for_status()
    sign_in(page, member.email, member.password)
    page.goto("/console/jobs")
    page.get_by_label("Type", exact=True).last.select_option("inventory-report")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("status")).to_have_text("The job was started.")
    # Refreshed by itself until it has finished (no reload here).
    link = page.get_by_role("link", name="Download the report (CSV, 1 rows)")
    expect(link).to_be_visible(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text().splitlines()[1].split(",")[1] == "Widget"
    check_accessibility(page)
    page.get_by_role("button", name="Replay as a new job").click()
    expect(page.get_by_role("status")).to_have_text("The job was started again as this new job.")
    expect(link).to_be_visible(timeout=60_000)
    page.goto("/console/jobs")
    expect(page.locator("tbody tr")).to_have_count(2)
    screenshot(page, "console-jobs")
    assert in_db(lambda: len(db.session.query(Job).all())) == 2
