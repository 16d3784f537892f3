"""The jobs pages: a member's own jobs (everyone's for an admin), one job's progress that
refreshes itself while it may change, start, cancel, replay and the report's download;
what the database holds after each."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.jobs.models import Job
from tests.console.conftest import Console

XSS = "<script>alert('x')</script>"


@pytest.fixture
def unserved(app, make_app, database_url, tmp_path):
    """The app on a broker no worker reads: jobs stay as the test leaves them."""
    return make_app(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'nobody-reads.db'}",
        JOB_LEASE_SECONDS="3600",
    )


@pytest.fixture
def browse(unserved):
    def signed_in(account: Any) -> Console:
        browser = Console(unserved.test_client())
        browser.sign_in(account)
        return browser

    return signed_in


@pytest.fixture
def add_job(in_db):
    def add(owner: uuid.UUID, job_type: str = "text-analysis", **values: Any) -> uuid.UUID:
        def store() -> uuid.UUID:
            job = Job(
                user_id=owner,
                type=job_type,
                input={"text": "a b a"} if job_type == "text-analysis" else {},
                status=values.pop("status", "queued"),
                **values,
            )
            db.session.add(job)
            db.session.commit()
            return job.id

        return in_db(store)

    return add


def jobs_of(in_db) -> dict[uuid.UUID, str]:
    return dict(in_db(lambda: {j.id: j.status for j in db.session.scalars(select(Job))}))


def test_a_member_sees_their_own_jobs_and_an_admin_everyones(browse, member, admin, add_job):
    mine = add_job(member.id)
    theirs = add_job(admin.id, "inventory-report")
    page = browse(member).get("/console/jobs")
    assert page.status_code == 200
    assert "<h1>Jobs</h1>" in page.text
    assert str(mine) in page.text
    assert str(theirs) not in page.text
    everyone = browse(admin).get("/console/jobs")
    assert str(mine) in everyone.text
    assert str(theirs) in everyone.text
    assert member.email in everyone.text  # the owner column


def test_the_list_filters_by_status_and_type_and_pages_on(browse, member, add_job):
    queued = [add_job(member.id), add_job(member.id)]
    failed = add_job(member.id, status="failed", error="RuntimeError: the job could not")
    report = add_job(member.id, "inventory-report")
    browser = browse(member)
    by_status = browser.get("/console/jobs?status=failed").text
    assert str(failed) in by_status
    assert str(queued[0]) not in by_status
    by_type = browser.get("/console/jobs?type=inventory-report").text
    assert str(report) in by_type
    assert str(failed) not in by_type
    first = browser.get("/console/jobs?type=text-analysis&status=queued&limit=1").text
    assert str(queued[1]) in first
    assert "type=text-analysis" in first.split('rel="next"')[0].rsplit("href=", 1)[1]
    # An unknown status is no filter at all, never an error or an echo.
    assert XSS not in browser.get(f"/console/jobs?status={XSS}").text


def test_a_running_job_page_refreshes_itself_and_a_finished_one_does_not(browse, member, add_job):
    running = add_job(member.id, status="running", progress=42)
    browser = browse(member)
    page = browser.get(f"/console/jobs/{running}").text
    assert f'data-refresh="/console/jobs/{running}"' in page
    assert 'data-fragment="job"' in page
    assert '<progress id="job-progress" max="100" value="42">42%</progress>' in page
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in page
    assert "Cancel this job" in page
    done = add_job(member.id, status="failed", error=XSS)
    page = browser.get(f"/console/jobs/{done}").text
    assert "data-refresh" not in page
    assert "http-equiv" not in page
    assert 'data-fragment="job"' in page
    assert XSS not in page
    assert "&lt;script&gt;" in page
    assert "Replay as a new job" in page


def test_cancel_a_running_job_from_its_page(browse, member, add_job, in_db):
    running = add_job(member.id, status="running", attempts=1)
    browser = browse(member)
    answer = browser.post(f"/console/jobs/{running}/cancel")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/console/jobs/{running}?done=cancelled"
    assert jobs_of(in_db)[running] == "cancelled"
    page = browser.get(answer.headers["Location"]).text
    assert "The job was cancelled." in page
    assert "data-refresh" not in page
    again = browser.post(f"/console/jobs/{running}/cancel")  # a stale form
    assert again.status_code == 409
    assert "Only a queued or running job can be cancelled; this one is cancelled." in again.text


def test_replay_a_finished_job_as_a_new_one(browse, member, admin, add_job, in_db):
    old = add_job(member.id, status="failed", error="RuntimeError: the job could not")
    answer = browse(admin).post(f"/console/jobs/{old}/replay")
    assert answer.status_code == 303
    new = uuid.UUID(answer.headers["Location"].split("/")[-1].split("?")[0])
    assert answer.headers["Location"].endswith("?done=replayed")
    assert jobs_of(in_db) == {old: "failed", new: "queued"}
    copy = in_db(lambda: db.session.get(Job, new))
    assert (copy.user_id, copy.type, copy.input) == (member.id, "text-analysis", {"text": "a b a"})
    queued = browse(member).post(f"/console/jobs/{new}/replay")
    assert queued.status_code == 409
    assert "Only a finished job can be replayed" in queued.text
    assert len(jobs_of(in_db)) == 2


def test_results_shown_as_a_table_and_the_report_downloaded(browse, member, add_job, in_db):
    analysis = add_job(
        member.id,
        status="succeeded",
        progress=100,
        result={"words": 3, "top_words": [{"word": XSS, "count": 2}]},
    )
    report = add_job(
        member.id,
        "inventory-report",
        status="succeeded",
        progress=100,
        result={"rows": 1, "columns": ["id"]},
        result_csv="id\n1\n",
    )
    browser = browse(member)
    page = browser.get(f"/console/jobs/{analysis}").text
    assert '<th scope="row">words</th><td class="num">3</td>' in page
    assert "<caption>Most frequent words</caption>" in page
    assert XSS not in page
    page = browser.get(f"/console/jobs/{report}").text
    assert f'href="/console/jobs/{report}/result.csv"' in page
    download = browser.get(f"/console/jobs/{report}/result.csv")
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    assert download.text == "id\n1\n"
    assert "attachment" in download.headers["Content-Disposition"]
    unfinished = add_job(member.id, "inventory-report")
    assert browser.get(f"/console/jobs/{unfinished}/result.csv").status_code == 409


def test_start_a_job_from_the_list(browse, member, in_db):
    browser = browse(member)
    browser.get("/console/jobs")
    answer = browser.post("/console/jobs", {"type": "text-analysis", "text": "hello there"})
    assert answer.status_code == 303
    started = in_db(lambda: db.session.scalars(select(Job)).one())
    assert answer.headers["Location"] == f"/console/jobs/{started.id}?done=started"
    assert (started.user_id, started.type, started.input) == (
        member.id,
        "text-analysis",
        {"text": "hello there"},
    )
    report = browser.post("/console/jobs", {"type": "inventory-report", "text": "ignored"})
    assert report.status_code == 303
    assert len(jobs_of(in_db)) == 2


@pytest.mark.parametrize("job_type", ["sentiment", "language"])
def test_a_model_job_takes_one_text_per_line_of_the_form(browse, member, in_db, job_type):
    browser = browse(member)
    browser.get("/console/jobs")
    answer = browser.post("/console/jobs", {"type": job_type, "text": "Great stuff\r\nBonjour"})
    assert answer.status_code == 303
    started = in_db(lambda: db.session.scalars(select(Job)).one())
    assert (started.type, started.input) == (job_type, {"texts": ["Great stuff", "Bonjour"]})


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"type": "text-analysis", "text": ""}, "text"),
        ({"type": "sentiment", "text": ""}, "text"),
        ({"type": "language", "text": "x" * 5001}, "text"),
        ({"type": "mining"}, "type"),
    ],
)
def test_a_bad_start_form_is_422_naming_the_field_and_starts_nothing(
    browse, member, in_db, form, field
):
    browser = browse(member)
    browser.get("/console/jobs")
    answer = browser.post("/console/jobs", form)
    assert answer.status_code == 422
    assert f'id="e-{field}"' in answer.text
    assert jobs_of(in_db) == {}


def test_another_persons_job_does_not_exist_for_a_member(browse, member, make_user, add_job, in_db):
    other = make_user()
    theirs = add_job(other.id, "inventory-report", status="running")
    browser = browse(member)
    assert browser.get(f"/console/jobs/{theirs}").status_code == 404
    assert browser.get(f"/console/jobs/{theirs}/result.csv").status_code == 404
    assert browser.post(f"/console/jobs/{theirs}/cancel").status_code == 404
    assert browser.post(f"/console/jobs/{theirs}/replay").status_code == 404
    assert jobs_of(in_db) == {theirs: "running"}


def test_cancel_without_the_csrf_token_is_refused(browse, member, add_job, in_db):
    running = add_job(member.id, status="running")
    browser = browse(member)
    assert browser.client.post(f"/console/jobs/{running}/cancel").status_code == 403
    assert jobs_of(in_db) == {running: "running"}
