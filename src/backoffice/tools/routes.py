"""Tools: `{prefix}/process`, `{prefix}/divide`, `{prefix}/chat`, `{prefix}/chat/usage`."""

from __future__ import annotations

from typing import Any

from apiflask.views import MethodView
from flask import current_app
from flask_limiter import RequestLimit

from backoffice import metrics
from backoffice.extensions import limiter
from backoffice.guards import authenticated, current_principal
from backoffice.openapi import problem_responses
from backoffice.output import Blueprint
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

bp = Blueprint("tools", __name__, tag="Tools")
TOOLS = [bp.auth_required(authenticated, roles=["tools"])]

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


class Process(MethodView):
    """`{prefix}/process`."""

    decorators = TOOLS

    @bp.input(ProcessIn, arg_name="body")
    @bp.output(ProcessOut)
    @bp.doc(operation_id="process", responses=problem_responses(400, 401, 403, 413, 415, 422))
    def post(self, body: ProcessIn) -> Any:
        """Process text: upper-cased, with its length and word count"""
        return {"input": body.input, "result": service.process_text(body.input)}


class Divide(MethodView):
    """`{prefix}/divide`."""

    decorators = TOOLS

    @bp.input(DivideQuery, location="query", arg_name="query")
    @bp.output(DivideOut)
    @bp.doc(operation_id="divide", responses=problem_responses(400, 401, 403, 422))
    def get(self, query: DivideQuery) -> Any:
        """Divide a by b (400 for a missing or non-numeric parameter, 422 for b = 0)"""
        return {"result": service.divide(query.a, query.b)}


class Chat(MethodView):
    """`{prefix}/chat`: the chat gateway."""

    decorators = TOOLS

    @limiter.limit(_chat_limit, key_func=_caller, on_breach=_count_breach)
    @bp.input(ChatIn, arg_name="chat")
    @bp.output(ChatOut)
    @bp.doc(operation_id="chat", responses=CHAT_RESPONSES)
    def post(self, chat: ChatIn) -> Any:
        """Ask the model (an OpenAI-compatible server); `"stream": true` for server-sent events

        Limited per user (`CHAT_RATE_LIMIT`, 20 per minute by default): past it, 429 with
        `Retry-After`; and in flight at once (`CHAT_CALLS_PER_PROCESS`, 503
        `model-server-busy`; `CHAT_CALLS_PER_USER`, 429 `too-many-chat-calls`). 503 when no
        model server is configured, 504 when it does not answer within `LLM_TIMEOUT` or the
        whole answer within `LLM_DEADLINE`, 502 when it fails or answers with something
        else than a chat completion. Every call's token usage is recorded
        (`GET {prefix}/chat/usage`).
        """
        caller = current_principal().user_id
        if chat.stream:
            return event_stream(service.chat_stream(caller, chat.message, chat.system))
        return service.chat(caller, chat.message, chat.system)


class ChatUsageCollection(MethodView):
    """`{prefix}/chat/usage`."""

    decorators = TOOLS

    @bp.input(ChatUsageQuery, location="query", arg_name="query")
    @bp.output(ChatUsageList)
    @bp.doc(operation_id="list_chat_usage", responses=problem_responses(400, 401, 403))
    def get(self, query: ChatUsageQuery) -> Any:
        """Chat calls and the tokens they spent, newest first: yours (everyone's for an admin)"""
        return service.list_usage(current_principal(), query.limit, query.cursor, query.user_id)


bp.add_url_rule("/process", view_func=Process.as_view("process"))
bp.add_url_rule("/divide", view_func=Divide.as_view("divide"))
bp.add_url_rule("/chat", view_func=Chat.as_view("chat"))
bp.add_url_rule("/chat/usage", view_func=ChatUsageCollection.as_view("chat_usage"))
