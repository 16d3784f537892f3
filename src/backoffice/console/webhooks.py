"""Webhook events (admins): filter, read one (its payload shown as text), replay one, or
every failed one that matches the filter."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import render_template, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backoffice.console.pages import (
    admin_only,
    audit,
    back_to,
    bp,
    cursor_arg,
    field_errors,
    page_limit,
)
from backoffice.webhooks import service as webhooks
from backoffice.webhooks.schemas import EventStatus

MESSAGES = {
    "replayed": "The event was sent to be processed again.",
    "replayed-all": "{count} failed events matching the filter were sent to be processed again.",
}
FILTER_FIELDS = ("source", "type", "status", "received_from", "received_before")
#: How each status looks (a class of console.css).
STATUS_CLASS = {
    EventStatus.PROCESSED: "good",
    EventStatus.FAILED: "bad",
    EventStatus.IGNORED: "warn",
}


class EventFilter(BaseModel):
    """The list's filter, as its GET form (and the replay-all form) sends it. Times are
    UTC, as the pages show them."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(default=None, max_length=64)
    type: str | None = Field(default=None, max_length=200)
    status: EventStatus | None = None
    received_from: datetime | None = None
    received_before: datetime | None = None

    @field_validator("received_from", "received_before")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        if moment is None or moment.tzinfo is not None:
            return moment
        return moment.replace(tzinfo=UTC)

    def service_filters(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "event_type": self.type,
            "received_from": self.received_from,
            "received_before": self.received_before,
        }


def _read_filter(values: Any) -> tuple[EventFilter, dict[str, str]]:
    """The filter and its fields as given (non-empty ones: they go back into the form
    and the next page's link); ValidationError when one is not valid."""
    given = {name: values.get(name, "").strip() for name in FILTER_FIELDS}
    given = {name: value for name, value in given.items() if value}
    return EventFilter.model_validate(given), given


def _page(template: str, **values: Any) -> str:
    return render_template(
        f"console/{template}.html",
        statuses=list(EventStatus),
        status_class={str(k): v for k, v in STATUS_CLASS.items()},
        replay_most=webhooks.REPLAY_MOST,
        **values,
    )


def _message() -> str | None:
    """What was just done; the count is a number, never the client's text."""
    count = request.args.get("count", "")
    text = MESSAGES.get(request.args.get("done", ""))
    return text.format(count=int(count) if count.isdigit() else 0) if text else None


@bp.get("/webhooks")
@admin_only
def event_list() -> Any:
    try:
        chosen, given = _read_filter(request.args)
    except ValidationError as error:
        errors = field_errors(error)
        return _page("events", page=None, given={}, errors=errors), 400
    page = webhooks.list_events(
        page_limit(), cursor_arg(), status=chosen.status, **chosen.service_filters()
    )
    return _page("events", page=page, given=given, errors={}, message=_message())


@bp.post("/webhooks/replay-failed")
@admin_only
def event_replay_failed() -> Any:
    """Replay every failed event matching the filter sent with the form (its status field,
    if any, is beside the point: only failed events are replayed)."""
    try:
        chosen, given = _read_filter(request.form)
    except ValidationError as error:
        errors = field_errors(error)
        return _page("events", page=None, given={}, errors=errors), 422
    count = webhooks.replay_failed(**chosen.service_filters())
    audit("webhooks.replay_failed", count=count, **given)
    return back_to("console.event_list", "replayed-all", count=count, **given)


@bp.get("/webhooks/<uuid:event_id>")
@admin_only
def event(event_id: uuid.UUID) -> Any:
    found = webhooks.get_event(event_id)
    payload = json.dumps(found.payload, indent=2, ensure_ascii=False)
    return _page("event", event=found, payload=payload, message=_message())


@bp.post("/webhooks/<uuid:event_id>/replay")
@admin_only
def event_replay(event_id: uuid.UUID) -> Any:
    webhooks.replay(event_id)
    audit("webhooks.replay", event_id=str(event_id))
    return back_to("console.event", "replayed", event_id=event_id)
