"""What each event type does, by registration: `@handles("payment_success")`.

An event type nobody handles is recorded as processed (there was nothing to do). The
handler for `payment_success` arrives with orders; it will mark the order paid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any]], None]
HANDLERS: dict[str, Handler] = {}


def handles(event_type: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[event_type] = handler
        return handler

    return register
