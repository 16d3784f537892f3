"""The model bench's pure parts: its batches, the worker's memory read from /proc, the
model's time read from a real `/metrics` text, and the figures it reports (no server or
worker is started here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backoffice.jobs.schemas import MAX_TEXT_CHARS, MAX_TEXTS
from bench.models import (
    BATCH,
    CORPUS,
    corpus,
    inference_totals,
    per_text_ms,
    rss_kib,
    run_seconds,
    summarize,
)


def test_a_batch_is_the_most_a_job_takes_cycling_through_the_corpus():
    texts = corpus()
    assert len(texts) == BATCH == MAX_TEXTS
    assert texts[: len(CORPUS)] == list(CORPUS)
    assert texts[len(CORPUS)] == CORPUS[0]
    assert all(0 < len(text) <= MAX_TEXT_CHARS for text in texts)


def test_the_resident_memory_is_read_from_proc_status():
    status = "Name:\tcelery\nVmPeak:\t  300000 kB\nVmRSS:\t  134632 kB\nThreads:\t5\n"
    assert rss_kib(status) == 134632
    assert rss_kib(Path(f"/proc/{os.getpid()}/status").read_text()) > 1024
    with pytest.raises(ValueError, match="VmRSS"):
        rss_kib("Name:\tkthreadd\n")


#: What `/metrics` serves of the histogram (a hand-written copy: a histogram made here would
#: write to this test process's multiprocess directory, which the worker tests scrape).
EXPOSITION = """\
# HELP backoffice_inference_seconds Time the model took on one text of a batch.
# TYPE backoffice_inference_seconds histogram
backoffice_inference_seconds_bucket{le="0.001",type="language"} 0.0
backoffice_inference_seconds_bucket{le="+Inf",type="language"} 4.0
backoffice_inference_seconds_count{type="language"} 4.0
backoffice_inference_seconds_sum{type="language"} 0.008
backoffice_inference_seconds_bucket{le="+Inf",type="sentiment"} 1.0
backoffice_inference_seconds_count{type="sentiment"} 1.0
backoffice_inference_seconds_sum{type="sentiment"} 0.5
# HELP backoffice_inference_texts_total Texts the models have processed.
# TYPE backoffice_inference_texts_total counter
backoffice_inference_texts_total{type="language"} 4.0
"""


def test_the_models_time_per_text_is_read_from_the_histogram_a_worker_writes():
    totals = inference_totals(EXPOSITION)
    assert totals == {
        "language": {"count": 4.0, "sum": 0.008},
        "sentiment": {"count": 1.0, "sum": 0.5},
    }
    later = {"count": 6.0, "sum": 0.012}
    assert per_text_ms(totals["language"], later) == pytest.approx(2.0)
    assert per_text_ms({}, {}) == 0.0


def test_texts_per_second_are_over_the_workers_run_and_the_medians_are_reported():
    job = {
        "started_at": "2026-12-05T04:46:00.100000Z",
        "finished_at": "2026-12-05T04:46:00.600000Z",
    }
    assert run_seconds(job) == pytest.approx(0.5)
    runs = [
        {"run_s": 0.5, "accepted_to_result_s": 0.6},
        {"run_s": 0.25, "accepted_to_result_s": 0.3},
        {"run_s": 1.0, "accepted_to_result_s": 1.2},
    ]
    found = summarize(runs)
    assert found["texts_per_s"] == 2000.0
    assert found["texts_per_s_rounds"] == [2000.0, 4000.0, 1000.0]
    assert found["accepted_to_result_s"] == 0.6
