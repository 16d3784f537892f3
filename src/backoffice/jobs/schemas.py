from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, RootModel, StrictStr

# Re-exported: the console reads the status and type words from here (not the models).
from backoffice.jobs.models import JobStatus as JobStatus
from backoffice.jobs.models import JobType as JobType
from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import InputModel, OutputModel, Timestamp


class TextAnalysisInput(InputModel):
    #: Bounded by the request body limit (MAX_CONTENT_LENGTH), not by a field length.
    text: Annotated[StrictStr, Field(min_length=1, examples=["Widgets sell well in spring"])]


class InventoryReportInput(InputModel):
    """No options: the report lists every item."""


#: The most texts one sentiment or language job takes.
MAX_TEXTS = 1000
#: The longest text (in characters) a sentiment or language job takes. The body as a whole
#: is bounded too, by MAX_CONTENT_LENGTH (1 MiB by default: 413 above it).
MAX_TEXT_CHARS = 5000
#: One text of a batch. Empty and whitespace-only texts are accepted (a batch keeps its
#: rows aligned with the caller's): they come back neutral and undetermined (`und`).
BatchText = Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)]


class TextBatchInput(InputModel):
    texts: Annotated[
        list[BatchText],
        Field(
            min_length=1,
            max_length=MAX_TEXTS,
            examples=[["The widgets arrived early, thank you!", "Le colis est en retard."]],
        ),
    ]


class TextAnalysisJob(InputModel):
    type: Literal["text-analysis"]
    input: TextAnalysisInput


class InventoryReportJob(InputModel):
    type: Literal["inventory-report"]
    input: InventoryReportInput = InventoryReportInput()


class SentimentJob(InputModel):
    type: Literal["sentiment"]
    input: TextBatchInput


class LanguageJob(InputModel):
    type: Literal["language"]
    input: TextBatchInput


JobSpec = Annotated[
    TextAnalysisJob | InventoryReportJob | SentimentJob | LanguageJob, Field(discriminator="type")
]


class JobIn(RootModel[JobSpec]):
    """`{"type": "text-analysis", "input": {"text": "..."}}`, `{"type": "inventory-report"}`,
    or `{"type": "sentiment" | "language", "input": {"texts": ["...", ...]}}`."""


class JobQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


class JobOut(OutputModel):
    id: uuid.UUID
    type: str
    status: JobStatus
    progress: int
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: Timestamp
    updated_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class JobAccepted(OutputModel):
    id: uuid.UUID
    status: JobStatus


class JobList(OutputModel):
    data: list[JobOut]
    next_cursor: str | None
