from __future__ import annotations

import math
import re
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictStr
from pydantic_core import PydanticCustomError

from backoffice.pagination import DEFAULT_LIMIT, Cursor, Limit
from backoffice.schemas import TEXT_RULES, InputModel, OutputModel, Timestamp, multi_line, trimmed

#: The most text `POST {prefix}/process` takes, in characters (after trimming).
MAX_PROCESS_CHARACTERS = 100_000
#: A chat message and a system prompt, in characters (after trimming).
MAX_CHAT_MESSAGE = 32_000
MAX_SYSTEM_PROMPT = 8_000
#: A query-string number: what JSON calls a number, with an optional leading `+`.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_DECIMAL_LENGTH = 1_000


def _decimal(value: object) -> object:
    """Only plain decimal notation is a number here: not `nan`, `inf`, `0x10`, `1_000` or
    ` 10 `, which Python or pydantic would otherwise accept."""
    if isinstance(value, str) and (
        len(value) > _MAX_DECIMAL_LENGTH or not _DECIMAL.fullmatch(value)
    ):
        raise PydanticCustomError(
            "decimal_number", "must be a decimal number such as 10, -2.5 or 1e3"
        )
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise PydanticCustomError(
            "number_out_of_range", "is out of range: beyond ±1.7976931348623157e308"
        )
    return value


#: A finite double, from a query parameter.
Number = Annotated[float, BeforeValidator(_decimal), AfterValidator(_finite)]


class ProcessIn(InputModel):
    input: Annotated[StrictStr, trimmed(1, MAX_PROCESS_CHARACTERS), multi_line] = Field(
        description=(
            "Free text, 1-100,000 characters after trimming; line breaks and tabs allowed, "
            f"other control characters not; {TEXT_RULES}."
        ),
        examples=["Widgets sell well in spring"],
    )


class ProcessResult(OutputModel):
    processed: str = Field(description="The text upper-cased.")
    length: int = Field(description="Characters (Unicode code points) in the text.")
    words: int = Field(description="Words in the text: runs of non-white-space.")


class ProcessOut(OutputModel):
    success: Literal[True] = True
    input: str
    result: ProcessResult


class DivideQuery(InputModel):
    a: Number = Field(description="The dividend, a decimal number.")
    b: Number = Field(
        description="The divisor, a decimal number other than 0.",
        json_schema_extra={"not": {"const": 0}},  # 422 otherwise: the document says so
    )


class DivideOut(OutputModel):
    result: float


class ChatIn(InputModel):
    message: Annotated[StrictStr, trimmed(1, MAX_CHAT_MESSAGE), multi_line] = Field(
        examples=["How many widgets are in stock?"]
    )
    stream: StrictBool = Field(
        default=False, description="Answer as server-sent events (text/event-stream)."
    )
    system: Annotated[StrictStr, trimmed(1, MAX_SYSTEM_PROMPT), multi_line] | None = Field(
        default=None,
        description=f"Instructions sent to the model before the message; {TEXT_RULES}.",
        examples=["Answer in one sentence."],
    )


class ChatOut(OutputModel):
    success: Literal[True] = True
    user_message: str
    assistant_message: str
    tokens_used: int | None = Field(
        description="Tokens the call spent, as the model server counted them (null if not)."
    )


class ChatUsageQuery(InputModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None
    user_id: uuid.UUID | None = Field(
        default=None, description="Only this user's calls (admins see everyone's)."
    )


class ChatUsageOut(OutputModel):
    id: uuid.UUID
    user_id: uuid.UUID
    model: str
    streamed: bool
    outcome: Literal["completed", "failed", "timed_out", "cancelled"]
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    latency_ms: int
    created_at: Timestamp
    updated_at: Timestamp


class ChatUsageList(OutputModel):
    data: list[ChatUsageOut]
    next_cursor: str | None
