"""The chat stream as server-sent events (`text/event-stream`).

    data: {"delta": "Hel"}                       a piece of the answer; as many as it takes
    data: {"delta": "lo!"}

    event: usage                                 once, when the answer is complete
    data: {"tokens_used": 12, "prompt_tokens": 9, "completion_tokens": 3}

    data: [DONE]                                 last: the answer is complete

When the model server fails part-way, an `error` event (a problem body, as a non-streamed
error would have) replaces `usage` and `[DONE]`, and the stream ends:

    event: error
    data: {"type": "/problems/model-server-timeout", "status": 504, "detail": "...", ...}

So a stream that ends without `[DONE]` is an incomplete answer. Each event is written as
it arrives from the model server, never buffered (`X-Accel-Buffering: no` tells Nginx).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
from flask import Response, stream_with_context

from backoffice.errors import APIError, handle_api_error, handle_unexpected
from backoffice.tools.llm import TokenUsage
from backoffice.tools.service import ChatStream

MIMETYPE = "text/event-stream"
DONE = "data: [DONE]\n\n"


def _event(data: str, name: str | None = None) -> str:
    return f"event: {name}\ndata: {data}\n\n" if name else f"data: {data}\n\n"


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _events(stream: ChatStream) -> Iterator[str]:
    try:
        for part in stream:
            if isinstance(part, TokenUsage):
                usage = {
                    "tokens_used": part.total_tokens,
                    "prompt_tokens": part.prompt_tokens,
                    "completion_tokens": part.completion_tokens,
                }
                yield _event(_json(usage), "usage")
            else:
                yield _event(_json({"delta": part}))
        yield DONE
    except APIError as error:
        yield _event(handle_api_error(error).get_data(as_text=True), "error")
    except Exception as error:  # a bug: logged with its traceback; the stream still ends
        yield _event(handle_unexpected(error).get_data(as_text=True), "error")
    finally:
        stream.close()  # the client went away, or the stream is over: end the upstream call


def event_stream(stream: ChatStream) -> Response:
    """A streamed 200 whose body is written event by event as the model answers."""
    response = Response(
        stream_with_context(_events(stream)),
        mimetype=MIMETYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # If the server closes the response before it ever iterated it, end the call anyway.
    response.call_on_close(stream.close)
    return response
