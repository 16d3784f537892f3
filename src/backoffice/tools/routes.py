"""Tools: `{prefix}/process`, `{prefix}/divide`, `{prefix}/chat`, `{prefix}/chat/usage`."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import current_app
from flask_limiter import RequestLimit

from backoffice import metrics
from backoffice.extensions import limiter
from backoffice.guards import authenticated, current_principal
from backoffice.openapi import problem_responses
from backoffice.pagination import page_response
from backoffice.tools import service
from backoffice.tools.schemas import (
    ChatIn,
    ChatOut,
    ChatUsageList,
    ChatUsageQuery,
    DivideOut,
    DivideQuery,
    ProcessIn,
    ProcessOut,
)
from backoffice.tools.sse import MIMETYPE, event_stream

bp = APIBlueprint("tools", __name__, tag="Tools")

STREAM_EXAMPLE = (
    'data: {"delta": "Hel"}\n\ndata: {"delta": "lo!"}\n\n'
    'event: usage\ndata: {"tokens_used": 12, "prompt_tokens": 9, "completion_tokens": 3}\n\n'
    "data: [DONE]\n\n"
)
#: One server-sent event (the stream is a sequence of them): `data` is JSON, or `[DONE]`.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["message", "usage", "error"]},
        "data": {"type": "string"},
    },
    "required": ["data"],
}
CHAT_RESPONSES: dict[int | str, Any] = {
    200: {
        "description": (
            'The answer; with `"stream": true`, server-sent events: `data: {"delta": ...}` '
            "per piece of the answer, then `event: usage` with the token counts, then "
            "`data: [DONE]`. A failure part-way is an `event: error` carrying a problem, "
            "and no `[DONE]`."
        ),
        "content": {MIMETYPE: {"schema": SSE_EVENT, "example": STREAM_EXAMPLE}},
    },
}
CHAT_PROBLEMS = problem_responses(400, 401, 403, 413, 415, 422, 429, 502, 503, 504)
CHAT_RESPONSES.update((status, text) for status, text in CHAT_PROBLEMS.items())


def _chat_limit() -> str:
    return str(current_app.config["CHAT_RATE_LIMIT"])


def _count_breach(_limit: RequestLimit) -> None:
    metrics.count_rate_limited("chat")


def _caller() -> str:
    """Chat calls are counted per user, whatever credential they came with."""
    return f"user:{current_principal().user_id}"


@bp.post("/process")
@bp.auth_required(authenticated, roles=["tools"])
@bp.input(ProcessIn, arg_name="body")
@bp.output(ProcessOut)
@bp.doc(responses=problem_responses(400, 401, 403, 413, 415, 422))
def process(body: ProcessIn) -> Any:
    """Process text: upper-cased, with its length and word count"""
    return {"success": True, "input": body.input, "result": service.process_text(body.input)}


@bp.get("/divide")
@bp.auth_required(authenticated, roles=["tools"])
@bp.input(DivideQuery, location="query", arg_name="query")
@bp.output(DivideOut)
@bp.doc(responses=problem_responses(400, 401, 403, 422))
def divide(query: DivideQuery) -> Any:
    """Divide a by b (400 for a missing or non-numeric parameter, 422 for b = 0)"""
    return {"result": service.divide(query.a, query.b)}


@bp.post("/chat")
@bp.auth_required(authenticated, roles=["tools"])
@limiter.limit(_chat_limit, key_func=_caller, on_breach=_count_breach)
@bp.input(ChatIn, arg_name="chat")
@bp.output(ChatOut)
@bp.doc(responses=CHAT_RESPONSES)
def chat(chat: ChatIn) -> Any:
    """Ask the model (an OpenAI-compatible server); `"stream": true` for server-sent events

    Limited per user (`CHAT_RATE_LIMIT`, 20 per minute by default): past it, 429 with
    `Retry-After`. 503 when no model server is configured, 504 when it does not answer
    within `LLM_TIMEOUT`, 502 when it fails or answers with something else than a chat
    completion. Every call's token usage is recorded (`GET {prefix}/chat/usage`).
    """
    caller = current_principal().user_id
    if chat.stream:
        return event_stream(service.chat_stream(caller, chat.message, chat.system))
    return service.chat(caller, chat.message, chat.system)


@bp.get("/chat/usage")
@bp.auth_required(authenticated, roles=["tools"])
@bp.input(ChatUsageQuery, location="query", arg_name="query")
@bp.output(ChatUsageList)
@bp.doc(responses=problem_responses(400, 401, 403))
def list_chat_usage(query: ChatUsageQuery) -> Any:
    """Chat calls and the tokens they spent, newest first: yours (everyone's for an admin)"""
    caller = current_principal()
    page = service.list_usage(
        caller.user_id, caller.is_admin, query.limit, query.cursor, query.user_id
    )
    return page_response(page)
