from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import request, url_for

from backoffice.guards import authenticated
from backoffice.openapi import json_object_body, problem_responses
from backoffice.pagination import page_response
from backoffice.webhooks import service
from backoffice.webhooks.schemas import DELIVERY_BODY, EventList, EventOut, EventQuery, Receipt

bp = APIBlueprint("webhooks", __name__, tag="Webhooks")

RECEIVE_RESPONSES: dict[int | str, Any] = {
    200: "A redelivery of an event already stored: `status: duplicate`, not processed again",
}
RECEIVE_RESPONSES.update(
    (status, text) for status, text in problem_responses(400, 401, 404, 413).items()
)


def _receive(source: str) -> Any:
    event_id, created = service.receive(source, request.headers, request.get_data())
    body = {"status": "success" if created else "duplicate", "id": event_id}
    if not created:
        return body, 200
    return body, 201, {"Location": url_for(".get_event", event_id=event_id)}


@bp.post("/webhook")
@bp.output(Receipt, status_code=201)
@bp.doc(responses=RECEIVE_RESPONSES, extensions=json_object_body(DELIVERY_BODY))
def receive_default() -> Any:
    """Receive an event from the default source (committed before the answer)"""
    return _receive(service.DEFAULT_SOURCE)


@bp.post("/webhooks/<source>")
@bp.output(Receipt, status_code=201)
@bp.doc(responses=RECEIVE_RESPONSES, extensions=json_object_body(DELIVERY_BODY))
def receive(source: str) -> Any:
    """Receive a partner's event, signed per Standard Webhooks"""
    return _receive(source)


@bp.get("/webhooks/events")
@bp.auth_required(authenticated, roles=["admin"])
@bp.input(EventQuery, location="query", arg_name="query")
@bp.output(EventList)
@bp.doc(responses=problem_responses(400, 401, 403))
def list_events(query: EventQuery) -> Any:
    """Stored events (admin), newest first; filter by source, type, status"""
    page = service.list_events(query.limit, query.cursor, query.source, query.type, query.status)
    return page_response(page)


@bp.get("/webhooks/events/<uuid:event_id>")
@bp.auth_required(authenticated, roles=["admin"])
@bp.output(EventOut)
@bp.doc(responses=problem_responses(400, 401, 403, 404))
def get_event(event_id: uuid.UUID) -> Any:
    """One stored event with its payload (admin)"""
    return service.get_event(event_id)


@bp.post("/webhooks/events/<uuid:event_id>/replay")
@bp.auth_required(authenticated, roles=["admin"])
@bp.output(EventOut, status_code=202)
@bp.doc(responses=problem_responses(400, 401, 403, 404))
def replay_event(event_id: uuid.UUID) -> Any:
    """Process a stored event again (admin)"""
    return service.replay(event_id)
