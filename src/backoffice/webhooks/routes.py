"""The webhook gateway, in the shape of items (`backoffice.items.routes`): the intake (a
partner's deliveries), and the stored events (admins)."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask.views import MethodView
from flask import request, url_for

from backoffice.guards import authenticated
from backoffice.openapi import (
    described_response,
    json_object_body,
    problem_responses,
    request_headers,
)
from backoffice.output import Blueprint
from backoffice.webhooks import service
from backoffice.webhooks.schemas import DELIVERY_BODY, EventList, EventOut, EventQuery, Receipt
from backoffice.webhooks.signatures import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

bp = Blueprint("webhooks", __name__, tag="Webhooks")

RECEIVE_RESPONSES: dict[int | str, Any] = {
    200: described_response(
        "A redelivery of an event already stored: `status: duplicate`, not processed again",
        Receipt,
    ),
}
RECEIVE_RESPONSES.update(
    (status, text) for status, text in problem_responses(400, 401, 404, 413).items()
)
#: What a signed source's delivery carries (a source in WEBHOOK_UNSIGNED_SOURCES need not).
SIGNATURE_HEADERS = request_headers(
    {
        ID_HEADER: "The delivery's unique id: a redelivery with the same id is a duplicate",
        TIMESTAMP_HEADER: "When it was signed, in Unix seconds",
        SIGNATURE_HEADER: "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated",
    }
)
ADMIN_ONLY = [bp.auth_required(authenticated, roles=["admin"])]


def _receive(source: str) -> Any:
    event_id, created = service.receive(source, request.headers, request.get_data())
    body = {"status": "success" if created else "duplicate", "id": event_id}
    if not created:
        return body, 200
    return body, 201, {"Location": url_for(".event", event_id=event_id)}


class DefaultIntake(MethodView):
    """`{prefix}/webhook`: deliveries from the default source."""

    @bp.output(Receipt, status_code=201)
    @bp.doc(
        operation_id="receive_default",
        responses=RECEIVE_RESPONSES,
        extensions=json_object_body(DELIVERY_BODY),
    )
    def post(self) -> Any:
        """Receive an event from the default source (committed before the answer)"""
        return _receive(service.DEFAULT_SOURCE)


class Intake(MethodView):
    """`{prefix}/webhooks/<source>`: a partner's deliveries."""

    @bp.output(Receipt, status_code=201)
    @bp.doc(
        operation_id="receive",
        responses=RECEIVE_RESPONSES,
        extensions={**json_object_body(DELIVERY_BODY), **SIGNATURE_HEADERS},
    )
    def post(self, source: str) -> Any:
        """Receive a partner's event, signed per Standard Webhooks"""
        return _receive(source)


class EventCollection(MethodView):
    """`{prefix}/webhooks/events`: what was received (admins)."""

    decorators = ADMIN_ONLY

    @bp.input(EventQuery, location="query", arg_name="query")
    @bp.output(EventList)
    @bp.doc(operation_id="list_events", responses=problem_responses(400, 401, 403))
    def get(self, query: EventQuery) -> Any:
        """Stored events (admin), newest first; filter by source, type, status"""
        return service.list_events(
            query.limit, query.cursor, query.source, query.type, query.status
        )


class EventResource(MethodView):
    """`{prefix}/webhooks/events/<id>`: one stored event (admins)."""

    decorators = ADMIN_ONLY

    @bp.output(EventOut)
    @bp.doc(operation_id="get_event", responses=problem_responses(400, 401, 403, 404))
    def get(self, event_id: uuid.UUID) -> Any:
        """One stored event with its payload (admin)"""
        return service.get_event(event_id)


class EventReplay(MethodView):
    """`{prefix}/webhooks/events/<id>/replay` (admins)."""

    decorators = ADMIN_ONLY

    @bp.output(EventOut, status_code=202)
    @bp.doc(operation_id="replay_event", responses=problem_responses(400, 401, 403, 404))
    def post(self, event_id: uuid.UUID) -> Any:
        """Process a stored event again (admin)"""
        return service.replay(event_id)


bp.add_url_rule("/webhook", view_func=DefaultIntake.as_view("default_intake"))
# Registered before `/webhooks/<source>`, so "events" is never taken for a source's name.
bp.add_url_rule("/webhooks/events", view_func=EventCollection.as_view("events"))
bp.add_url_rule("/webhooks/<source>", view_func=Intake.as_view("intake"))
bp.add_url_rule("/webhooks/events/<uuid:event_id>", view_func=EventResource.as_view("event"))
bp.add_url_rule("/webhooks/events/<uuid:event_id>/replay", view_func=EventReplay.as_view("replay"))
