"""Nothing accepted is lost: not when the broker is down, not when a worker dies."""

from __future__ import annotations

import signal
import time

from sqlalchemy import insert

from backoffice.database import new_id, utcnow
from backoffice.extensions import db
from backoffice.items.models import Item
from tests.jobs.test_routes import start, wait_for

#: A port nothing listens on: publishing there fails at once.
DEAD_BROKER = "redis://127.0.0.1:1/0"


def member_client(app, client):
    other = app.test_client()
    other.environ_base.update(client.environ_base)
    return other


def test_a_job_accepted_while_the_broker_is_down_still_runs(
    make_app, database_url, client, worker, in_db
):
    down = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL=DEAD_BROKER)
    url, _ = start(member_client(down, client), {"type": "text-analysis", "input": {"text": "a b"}})
    assert client.get(url).json["status"] == "queued"
    # The worker's relay finds the accepted, never-sent job and sends it itself.
    job = wait_for(client, url)
    assert job["status"] == "succeeded"
    assert job["result"]["words"] == 2
    assert job["attempts"] == 1
    # The relay keeps going after it has sent something (it once died on its own log line).
    url, _ = start(member_client(down, client), {"type": "text-analysis", "input": {"text": "c"}})
    assert wait_for(client, url)["status"] == "succeeded"


def test_a_job_whose_worker_is_killed_mid_run_is_done_again_exactly_once(
    make_app, database_url, client, start_worker, tmp_path, in_db
):
    def seed() -> None:
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "name": f"Bulk {n}",
                "description": None,
                "quantity": n % 7,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            for n in range(40_000)
        ]
        db.session.execute(insert(Item), rows)
        db.session.commit()

    in_db(seed)
    broker = f"sqla+sqlite:///{tmp_path / 'dedicated.db'}"
    dedicated = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL=broker)
    first = start_worker(CELERY_BROKER_URL=broker)
    url, _ = start(member_client(dedicated, client), {"type": "inventory-report"})
    deadline = time.monotonic() + 60
    while True:  # kill it well inside the run, not as it finishes
        job = client.get(url).json
        if job["status"] == "running" and 5 <= job["progress"] <= 60:
            break
        assert job["status"] in {"queued", "running"}, job
        assert time.monotonic() < deadline, "the job never got going"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert client.get(url).json["status"] == "running"  # the dead worker's claim remains
    start_worker(CELERY_BROKER_URL=broker)  # its relay re-sends once the lease runs out
    job = wait_for(client, url, timeout=120)
    assert job["status"] == "succeeded"
    assert job["attempts"] >= 2
    assert job["result"]["rows"] == 40_000
    report = client.get(f"{url}/result").get_data(as_text=True).splitlines()
    assert len(report) == 1 + 40_000
    assert len(set(report)) == len(report)
