"""Sentiment and language jobs through real Celery workers: a 1,000-text batch, the model
loaded once per worker process however many jobs it runs (counted in `/metrics`), and a
worker SIGKILLed mid-batch (the job is done again, once)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from backoffice.jobs.schemas import MAX_TEXTS
from tests.support import eventually, member_client, start_job, wait_for_job

TOKEN = "metrics-token-models-0123456789abcdef0123456789"
#: Known texts, and what each model gives them (see test_models.py for the full table).
KNOWN = [
    ("I love this product, it works perfectly and the support was wonderful!", "positive", "en"),
    ("This is the worst purchase I have ever made. Totally broken and useless.", "negative", "en"),
    ("The package arrived on Tuesday and contains two cables.", "neutral", "en"),
    ("Je suis très content de ce produit, il fonctionne parfaitement.", None, "fr"),
    ("Das Paket ist gestern angekommen und die Qualität ist wirklich sehr gut.", None, "de"),
    ("El paquete llegó ayer y la calidad es realmente muy buena, gracias.", None, "es"),
    ("😀😀😀", "positive", "und"),
    ("   ", "neutral", "und"),
]
MODELS = {"sentiment": ("vader", "vaderSentiment"), "language": ("langid", "py3langid")}


def batch(size: int = MAX_TEXTS) -> list[str]:
    return [KNOWN[n % len(KNOWN)][0] for n in range(size)]


def expected(job_type: str, n: int) -> str | None:
    _, label, code = KNOWN[n % len(KNOWN)]
    return label if job_type == "sentiment" else code


def outcome(job_type: str, result: dict[str, Any]) -> list[str]:
    key = "label" if job_type == "sentiment" else "language"
    return [each[key] for each in result["results"]]


def assert_whole(job_type: str, job: dict[str, Any], size: int = MAX_TEXTS) -> None:
    """A finished batch: every text's result, in order, from the model it names."""
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 100
    model, package = MODELS[job_type]
    assert (job["result"]["model"], job["result"]["model_version"]) == (model, version(package))
    found = outcome(job_type, job["result"])
    assert len(found) == size
    for n, got in enumerate(found):
        want = expected(job_type, n)
        assert want is None or got == want, (n, got, want)


@pytest.mark.parametrize("job_type", ["sentiment", "language"])
def test_a_batch_of_a_thousand_texts_finishes_in_the_worker(client, worker, job_type):
    url, _ = start_job(client, {"type": job_type, "input": {"texts": batch()}})
    job = wait_for_job(client, url)
    assert_whole(job_type, job)
    assert job["attempts"] == 1
    assert job["finished_at"] >= job["started_at"] >= job["created_at"]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(app: APIFlask) -> Samples:
    """Every process's samples, through the app's own `/metrics`."""
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def dedicated(
    make_app: Callable[..., APIFlask], database_url: str, tmp_path: Any
) -> tuple[APIFlask, str]:
    """An app with a broker of its own (a worker started on it takes all of its jobs),
    which serves `/metrics`; and that broker's URL."""
    broker = f"sqla+sqlite:///{tmp_path / 'dedicated.db'}"
    app = make_app(DATABASE_URL=database_url, CELERY_BROKER_URL=broker, METRICS_TOKEN=TOKEN)
    return app, broker


def test_a_worker_process_loads_each_model_once_for_all_its_jobs(
    client: FlaskClient, start_worker: Callable[..., Any], dedicated: tuple[APIFlask, str]
) -> None:
    app, broker = dedicated
    # Four threads in one process, as the Procfile runs the worker: they race for the
    # first load of each model.
    start_worker("--pool", "threads", "--concurrency", "4", CELERY_BROKER_URL=broker)
    member = member_client(app, client)
    before = scrape(app)
    size = 120
    urls = [
        start_job(member, {"type": job_type, "input": {"texts": batch(size)}})[0]
        for _ in range(4)
        for job_type in ("sentiment", "language")
    ]
    jobs = [wait_for_job(member, url) for url in urls]
    assert [job["status"] for job in jobs] == ["succeeded"] * 8
    after = eventually(
        lambda: scrape(app),
        lambda seen: (
            grew(before, seen, "backoffice_inference_texts_total", type="language") >= 4 * size
        ),
        timeout=10,
    )
    for job_type, (model, _) in MODELS.items():
        assert grew(before, after, "backoffice_model_loads_total", model=model) == 1
        assert grew(before, after, "backoffice_inference_texts_total", type=job_type) == 4 * size
        assert grew(before, after, "backoffice_inference_seconds_count", type=job_type) == 4 * size
        assert grew(before, after, "backoffice_inference_seconds_sum", type=job_type) > 0


@pytest.mark.parametrize("job_type", ["sentiment", "language"])
def test_a_batch_whose_worker_is_killed_midway_is_done_again_once(
    client, worker, start_worker, dedicated, job_type
):
    app, broker = dedicated
    # Its runners pause 0.25 s at each progress report: 19 reports, about 5 s a batch.
    doomed = start_worker(CELERY_BROKER_URL=broker, TEST_PROGRESS_PAUSE="0.25")
    member = member_client(app, client)
    url, _ = start_job(member, {"type": job_type, "input": {"texts": batch()}})
    midway = eventually(
        lambda: dict(member.get(url).json),
        lambda job: job["status"] == "running" and job["progress"] >= 10,
        interval=0.05,
    )
    assert midway["progress"] < 100
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    assert member.get(url).json["status"] == "running"  # its claim remains
    # Once the lease runs out, the session worker's relay sends it again.
    job = wait_for_job(member, url, timeout=120)
    assert_whole(job_type, job)
    assert job["attempts"] == 2
