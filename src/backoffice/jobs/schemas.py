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


class TextAnalysisJob(InputModel):
    type: Literal["text-analysis"]
    input: TextAnalysisInput


class InventoryReportJob(InputModel):
    type: Literal["inventory-report"]
    input: InventoryReportInput = InventoryReportInput()


JobSpec = Annotated[TextAnalysisJob | InventoryReportJob, Field(discriminator="type")]


class JobIn(RootModel[JobSpec]):
    """`{"type": "text-analysis", "input": {"text": "..."}}` or `{"type": "inventory-report"}`."""


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
