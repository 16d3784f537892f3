"""What each job type computes. Plain functions: input in, result out, progress reported.

Registered by type in `create_app()` (`jobs.service.init_runners`).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from backoffice import metrics
from backoffice.items import service as items
from backoffice.jobs.classifiers import LANGID, VADER, PackagedModel, language, sentiment
from backoffice.jobs.models import JobType

Progress = Callable[[int], None]
WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
SENTENCE = re.compile(r"[^.!?]*\w[^.!?]*(?:[.!?]+|$)")
TOP_WORDS = 10
REPORT_BATCH = 1000
REPORT_COLUMNS = ("id", "name", "description", "quantity", "created_at", "updated_at")
#: A model job reports its progress (renewing its lease) and its metrics every this many texts.
PROGRESS_EVERY = 50


def text_analysis(job_input: dict[str, Any], progress: Progress) -> tuple[dict[str, Any], None]:
    text: str = job_input["text"]
    words = [word.lower() for word in WORD.findall(text)]
    result = {
        "characters": len(text),
        "characters_without_spaces": sum(not char.isspace() for char in text),
        "words": len(words),
        "unique_words": len(set(words)),
        "lines": len(text.splitlines()),
        "sentences": len([s for s in SENTENCE.findall(text) if s.strip()]),
        "top_words": [
            {"word": word, "count": count} for word, count in Counter(words).most_common(TOP_WORDS)
        ],
    }
    progress(100)
    return result, None


def inventory_report(job_input: dict[str, Any], progress: Progress) -> tuple[dict[str, Any], str]:
    """Every item as CSV, read in keyset batches so memory stays flat and progress moves."""
    total = items.count_items()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    done = 0
    for batch in items.items_in_batches(REPORT_BATCH):
        writer.writerows(
            [
                item.id,
                item.name,
                item.description or "",
                item.quantity,
                item.created_at.isoformat(),
                item.updated_at.isoformat(),
            ]
            for item in batch
        )
        done += len(batch)
        progress(min(99, done * 100 // max(total, 1)))
    return {"rows": done, "columns": list(REPORT_COLUMNS)}, out.getvalue()


def sentiment_batch(job_input: dict[str, Any], progress: Progress) -> tuple[dict[str, Any], None]:
    """Each text's sentiment label and scores (VADER), in the order given."""
    return _classify(JobType.SENTIMENT, VADER, sentiment, job_input["texts"], progress), None


def language_batch(job_input: dict[str, Any], progress: Progress) -> tuple[dict[str, Any], None]:
    """Each text's language code and confidence (langid), in the order given."""
    return _classify(JobType.LANGUAGE, LANGID, language, job_input["texts"], progress), None


def _classify(
    job_type: str,
    packaged: PackagedModel[Any],
    classify: Callable[[Any, str], dict[str, Any]],
    texts: list[str],
    progress: Progress,
) -> dict[str, Any]:
    """Run the model (loaded once per process) over the batch, text by text, timing each;
    every PROGRESS_EVERY texts, report progress and the times (metrics.observe_inference)."""
    model = packaged.get()
    # A process's first job waited for the load (seconds for langid on a busy machine):
    # renew the lease now, not only after the first PROGRESS_EVERY texts.
    progress(0)
    results: list[dict[str, Any]] = []
    timings: list[float] = []
    for text in texts:
        started = time.perf_counter()
        results.append(classify(model, text))
        timings.append(time.perf_counter() - started)
        if len(timings) == PROGRESS_EVERY:
            metrics.observe_inference(job_type, timings)
            timings = []
            if len(results) < len(texts):
                progress(len(results) * 100 // len(texts))
    if timings:
        metrics.observe_inference(job_type, timings)
    return {"model": packaged.name, "model_version": packaged.version, "results": results}
