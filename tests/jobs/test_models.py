"""Sentiment and language jobs (docs/api/model-jobs.md): the packaged models on known
sentences, the input bounds, who may run them, and the model held once per process.

The runs through a real Celery worker (1,000-text batches, a worker killed mid-batch,
loads counted per worker process) are in `test_models_worker.py`.
"""

from __future__ import annotations

import threading
from importlib.metadata import version

import pytest
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.jobs import runners
from backoffice.jobs.classifiers import LANGID, MIN_LANGUAGE_CONFIDENCE, VADER, PackagedModel
from backoffice.jobs.models import Job
from backoffice.jobs.schemas import MAX_TEXT_CHARS, MAX_TEXTS
from tests.support import assert_problem, start_job

#: (text, VADER's label, langid's language). VADER's lexicon is English: only English
#: sentences (and emoji, which it scores) are given a sentiment here.
SENTENCES = [
    ("I love this product, it works perfectly and the support was wonderful!", "positive", "en"),
    ("This is the worst purchase I have ever made. Totally broken and useless.", "negative", "en"),
    ("The package arrived on Tuesday and contains two cables.", "neutral", "en"),
    ("The hotel was great but the food was terrible.", "negative", "en"),  # "but" weighs more
    ("Not bad at all :)", "positive", "en"),  # a negated negative, and an emoticon
    ("The service was not good.", "negative", "en"),
    ("Je suis très content de ce produit, il fonctionne parfaitement.", None, "fr"),
    ("Das Paket ist gestern angekommen und die Qualität ist wirklich sehr gut.", None, "de"),
    ("El paquete llegó ayer y la calidad es realmente muy buena, gracias.", None, "es"),
    ("Il pacco è arrivato ieri e la qualità è davvero ottima.", None, "it"),
    ("I love Paris! J'adore Paris, c'est une ville magnifique.", "positive", "fr"),  # mixed
    ("😀😀😀", "positive", "und"),
    ("😡", "neutral", "und"),  # not in VADER's emoji lexicon
    ("   \n\t  ", "neutral", "und"),
    ("", "neutral", "und"),
]


def record_progress() -> tuple[list[int], runners.Progress]:
    seen: list[int] = []
    return seen, seen.append


@pytest.mark.parametrize(("text", "label", "code"), SENTENCES)
def test_known_sentences_get_the_expected_sentiment_and_language(text, label, code):
    _, progress = record_progress()
    sentiment, csv_text = runners.sentiment_batch({"texts": [text]}, progress)
    language, _ = runners.language_batch({"texts": [text]}, progress)
    assert csv_text is None
    [felt] = sentiment["results"]
    [found] = language["results"]
    if label is not None:
        assert felt["label"] == label
    assert set(felt["scores"]) == {"negative", "neutral", "positive", "compound"}
    assert -1 <= felt["scores"]["compound"] <= 1
    assert found["language"] == code
    assert 0 < found["confidence"] <= 1
    # Undetermined is what falls below the threshold (every language scoring alike).
    assert (found["confidence"] < MIN_LANGUAGE_CONFIDENCE) == (code == "und")


def test_results_name_the_model_and_its_package_version_in_the_order_given():
    texts = ["Great!", "Awful.", "Fine."]
    _, progress = record_progress()
    sentiment, _ = runners.sentiment_batch({"texts": texts}, progress)
    language, _ = runners.language_batch({"texts": texts}, progress)
    assert (sentiment["model"], sentiment["model_version"]) == ("vader", version("vaderSentiment"))
    assert (language["model"], language["model_version"]) == ("langid", version("py3langid"))
    assert [r["label"] for r in sentiment["results"]] == ["positive", "negative", "positive"]
    assert len(language["results"]) == 3


def test_a_batch_reports_progress_every_fifty_texts_below_one_hundred():
    seen, progress = record_progress()
    runners.language_batch({"texts": ["Guten Morgen"] * 1000}, progress)
    assert seen == [0, *range(5, 100, 5)]  # 0 after the load; the engine writes 100 with the result
    seen, progress = record_progress()
    runners.sentiment_batch({"texts": ["ok"] * 49}, progress)
    assert seen == [0]  # the report after the load only


def test_a_model_is_loaded_once_however_many_threads_ask_at_once():
    loads: list[int] = []
    started = threading.Barrier(8)

    def load() -> object:
        loads.append(1)
        return object()

    model: PackagedModel[object] = PackagedModel("test-model", "vaderSentiment", load)
    got: list[object] = []

    def ask() -> None:
        started.wait()
        got.append(model.get())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == [1]
    assert len(got) == 8
    assert all(each is got[0] for each in got)
    assert model.get() is got[0]
    assert loads == [1]


def test_the_shipped_models_are_the_processs_own_single_copies():
    assert VADER.get() is VADER.get()
    assert LANGID.get() is LANGID.get()


def jobs_stored(in_db) -> list[Job]:
    return list(in_db(lambda: db.session.scalars(select(Job)).all()))


@pytest.mark.parametrize("job_type", ["sentiment", "language"])
@pytest.mark.parametrize(
    ("texts", "field"),
    [
        ([], "input.texts"),
        (["x"] * (MAX_TEXTS + 1), "input.texts"),
        (["fine", "x" * (MAX_TEXT_CHARS + 1)], "input.texts.1"),
        (["fine", "also fine", 5], "input.texts.2"),
        (["fine", None], "input.texts.1"),
        ("not a list", "input.texts"),
    ],
    ids=["empty", "too-many", "too-long", "a-number", "null", "a-string"],
)
def test_bad_texts_are_422_naming_the_bad_one_and_store_nothing(
    client, in_db, job_type, texts, field
):
    response = client.post("/api/jobs", json={"type": job_type, "input": {"texts": texts}})
    # Paths start with the job type, as every job's 422 does (the union's tag).
    assert_problem(response, 422, f"{job_type}.{field}")
    assert jobs_stored(in_db) == []


@pytest.mark.parametrize("job_type", ["sentiment", "language"])
def test_no_texts_at_all_is_422(client, in_db, job_type):
    assert_problem(client.post("/api/jobs", json={"type": job_type, "input": {}}), 422)
    assert_problem(client.post("/api/jobs", json={"type": job_type}), 422)
    assert jobs_stored(in_db) == []


def test_the_bounds_themselves_are_accepted(client, in_db, member):
    _, accepted = start_job(
        client, {"type": "sentiment", "input": {"texts": ["y" * MAX_TEXT_CHARS, "", " "]}}
    )
    [job] = jobs_stored(in_db)
    assert str(job.id) == accepted["id"]
    assert (job.user_id, job.type) == (member.id, "sentiment")
    # A worker of the suite may take it at once: accepted is all this test is about.
    assert job.status in {"queued", "running", "succeeded"}
    assert job.input == {"texts": ["y" * MAX_TEXT_CHARS, "", " "]}


def test_a_batch_over_the_body_limit_is_413_and_stores_nothing(client, in_db):
    # 1,000 texts of 2,000 characters each: every one within bounds, the body over 1 MiB.
    texts = ["z" * 2000] * MAX_TEXTS
    response = client.post("/api/jobs", json={"type": "language", "input": {"texts": texts}})
    assert_problem(response, 413)
    assert jobs_stored(in_db) == []


def test_a_member_runs_them_with_the_jobs_scope_only(client, anonymous, in_db):
    body = {"type": "language", "input": {"texts": ["Hallo Welt"]}}
    start_job(client, body)
    keys = {}
    for scopes in (["jobs"], ["items", "todos"]):
        made = client.post("/api/auth/api-keys", json={"name": "bot", "scopes": scopes})
        assert made.status_code == 201
        keys[scopes[0]] = made.json["key"]
    accepted = anonymous.post("/api/jobs", json=body, headers={"X-API-Key": keys["jobs"]})
    assert accepted.status_code == 202
    refused = anonymous.post("/api/jobs", json=body, headers={"X-API-Key": keys["items"]})
    assert_problem(refused, 403)
    assert_problem(anonymous.post("/api/jobs", json=body), 401)
    assert len(jobs_stored(in_db)) == 2


def test_another_member_cannot_see_them(client, as_user, make_user):
    url, _ = start_job(client, {"type": "sentiment", "input": {"texts": ["mine"]}})
    assert_problem(as_user(make_user()).get(url), 404)
    assert client.get(url).status_code == 200
