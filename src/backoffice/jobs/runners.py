"""What each job type computes. Plain functions: input in, result out, progress reported."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.items.models import Item

Progress = Callable[[int], None]
WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
SENTENCE = re.compile(r"[^.!?]*\w[^.!?]*(?:[.!?]+|$)")
TOP_WORDS = 10
REPORT_BATCH = 1000
REPORT_COLUMNS = ("id", "name", "description", "quantity", "created_at", "updated_at")


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
    total = db.session.scalar(select(func.count()).select_from(Item)) or 0
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    done, last_id = 0, None
    while True:
        query = select(Item).order_by(Item.id).limit(REPORT_BATCH)
        if last_id is not None:
            query = query.where(Item.id > last_id)
        batch = list(db.session.scalars(query))
        if not batch:
            break
        for item in batch:
            writer.writerow(
                [
                    item.id,
                    item.name,
                    item.description or "",
                    item.quantity,
                    item.created_at.isoformat(),
                    item.updated_at.isoformat(),
                ]
            )
        done += len(batch)
        last_id = batch[-1].id
        db.session.expunge_all()
        progress(min(99, done * 100 // max(total, 1)))
    return {"rows": done, "columns": list(REPORT_COLUMNS)}, out.getvalue()


RUNNERS: dict[str, Callable[[dict[str, Any], Progress], tuple[dict[str, Any], str | None]]] = {
    "text-analysis": text_analysis,
    "inventory-report": inventory_report,
}
