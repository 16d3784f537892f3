"""Jobs (PRODUCT.md §2 Background jobs), run by a real Celery worker."""

from __future__ import annotations

import csv
import io
import uuid

import pytest
from sqlalchemy import select

from backoffice import work
from backoffice.extensions import db
from backoffice.jobs.models import Job
from tests.items.factories import create_item
from tests.support import assert_problem, member_client, start_job, wait_for_job


def test_text_analysis_runs_in_the_worker(app, client, worker, in_db):
    text = "The cat sat. The cat ran!\nA dog? The end."
    url, accepted = start_job(client, {"type": "text-analysis", "input": {"text": text}})
    job = wait_for_job(client, url)
    assert job["status"] == "succeeded"
    assert job["progress"] == 100
    assert job["attempts"] == 1
    result = job["result"]
    assert result["characters"] == len(text)
    assert result["words"] == 10
    assert result["lines"] == 2
    assert result["sentences"] == 4
    assert result["top_words"][:2] == [{"word": "the", "count": 3}, {"word": "cat", "count": 2}]
    assert job["finished_at"] >= job["started_at"] >= job["created_at"]
    assert work.sender(app).wait_sent(timeout=30)  # the stamp follows the publish
    stored = in_db(lambda: db.session.get(Job, uuid.UUID(accepted["id"])))
    assert stored.enqueued_at is not None


def test_inventory_report_is_a_csv_of_every_item(client, worker):
    made = [create_item(client, name=f"Report {n}", quantity=n) for n in range(5)]
    url, _ = start_job(client, {"type": "inventory-report"})
    job = wait_for_job(client, url)
    assert job["status"] == "succeeded"
    assert job["result"]["rows"] == 5
    response = client.get(f"{url}/result")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert sorted(row["id"] for row in rows) == sorted(item["id"] for item in made)
    assert {row["name"]: int(row["quantity"]) for row in rows} == {
        item["name"]: item["quantity"] for item in made
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "mining", "input": {}}, "type"),
        ({"type": "text-analysis", "input": {}}, "input.text"),
        ({"type": "text-analysis", "input": {"text": ""}}, "input.text"),
        ({"type": "text-analysis", "input": {"text": 5}}, "input.text"),
        ({"type": "inventory-report", "input": {"format": "xls"}}, "input.format"),
        ({"input": {"text": "x"}}, "type"),
    ],
)
def test_an_unknown_type_or_bad_input_is_422_and_queues_nothing(client, in_db, body, field):
    response = client.post("/api/jobs", json=body)
    assert_problem(response, 422)
    # A bad or missing `type` is reported on the body as a whole, naming the discriminator.
    named = field.split(".")[-1]
    assert any(
        error["field"].endswith(named) or f"'{named}'" in error["message"]
        for error in response.json["errors"]
    )
    assert in_db(lambda: db.session.scalars(select(Job)).all()) == []


def test_jobs_are_private_to_their_owner_but_not_to_admins(
    client, as_user, make_user, admin, worker
):
    url, accepted = start_job(client, {"type": "text-analysis", "input": {"text": "mine"}})
    other = as_user(make_user())
    assert_problem(other.get(url), 404)
    assert other.get("/api/jobs").json["data"] == []
    assert as_user(admin).get(url).status_code == 200
    listed = client.get("/api/jobs").json["data"]
    assert [job["id"] for job in listed] == [accepted["id"]]


@pytest.fixture
def unserved(make_app, database_url, tmp_path, client):
    """The member's client on an app whose broker no worker reads: jobs stay queued."""
    idle = make_app(
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'nobody-reads.db'}",
        JOB_LEASE_SECONDS="3600",
    )
    return member_client(idle, client)


def test_a_queued_job_can_be_cancelled_and_never_runs(app, unserved):
    client = unserved
    url, accepted = start_job(client, {"type": "text-analysis", "input": {"text": "later"}})
    assert client.delete(url).status_code == 204
    job = client.get(url).json
    assert job["status"] == "cancelled"
    assert_problem(client.delete(url), 409)
    with app.app_context():
        work.process("jobs", uuid.UUID(accepted["id"]))  # a late message finds nothing to do
    assert client.get(url).json["status"] == "cancelled"


def test_the_result_of_an_unfinished_job_is_409(unserved):
    client = unserved
    url, _ = start_job(client, {"type": "inventory-report"})
    client.delete(url)
    assert_problem(client.get(f"{url}/result"), 409)


def test_a_text_analysis_has_no_csv_result(client, worker):
    url, _ = start_job(client, {"type": "text-analysis", "input": {"text": "x"}})
    wait_for_job(client, url)
    assert_problem(client.get(f"{url}/result"), 404)


def test_a_stored_input_that_no_longer_fits_its_type_fails_once_with_the_reason(app, unserved):
    """A row whose input a runner cannot read (written by an older release, or by hand)
    fails at once with what is wrong, never retried, and no runner runs on it."""
    client = unserved
    url, accepted = start_job(client, {"type": "text-analysis", "input": {"text": "soon"}})
    job_id = uuid.UUID(accepted["id"])
    with app.app_context():
        db.session.execute(db.update(Job).where(Job.id == job_id).values(input={"txt": "soon"}))
        db.session.commit()
        assert work.process("jobs", job_id) is False  # no retry
    job = client.get(url).json
    assert job["status"] == "failed"
    assert job["error"] == (
        "The job's input does not fit its type: "
        "input.text: Field required; input.txt: Extra inputs are not permitted"
    )
    assert job["attempts"] == 1
    assert job["result"] is None
