"""Reading a `text/event-stream` body back into events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    name: str  # "message" when the event names none
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def parse_events(body: str) -> list[Event]:
    """Every complete event (a block ended by a blank line) in `body`, in order."""
    events = []
    for block in body.split("\n\n")[:-1]:
        name, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append(Event(name, "\n".join(data)))
    return events


def answer_of(events: list[Event]) -> str:
    """The assistant's text: every delta, joined."""
    return "".join(
        event.json["delta"]
        for event in events
        if event.name == "message" and event.data != "[DONE]"
    )
