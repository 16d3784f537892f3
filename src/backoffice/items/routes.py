"""Items: the exemplar every resource follows.

One `MethodView` for the collection (`GET`, `POST`) and one for a member (`GET`, `PUT`,
`PATCH`, `DELETE`); auth declared once per class; each method declares its input,
output and errors, turns headers into arguments (`If-Match` into an expected version),
calls the service, and returns what the service gave it, with a status and headers. The
output path (`@bp.output`, `backoffice.output`) writes it; no view serialises.
"""

from __future__ import annotations

import uuid
from typing import Any

from apiflask.views import MethodView
from flask import Response, url_for

from backoffice.conventions import (
    etag_for,
    etag_header,
    expected_version,
    no_content,
    not_modified,
)
from backoffice.guards import authenticated
from backoffice.idempotency import idempotent
from backoffice.items import service
from backoffice.items.schemas import ItemIn, ItemList, ItemOut, ItemPatch, ItemQuery, ItemReplace
from backoffice.openapi import PRECONDITION_RESPONSES, problem_responses
from backoffice.output import Blueprint

bp = Blueprint("items", __name__, tag="Items")


class ItemCollection(MethodView):
    """`{prefix}/items`: the inventory."""

    decorators = [bp.auth_required(authenticated, roles=["items"])]

    @bp.input(ItemQuery, location="query", arg_name="query")
    @bp.output(ItemList)
    @bp.doc(operation_id="list_items", responses=problem_responses(400, 401, 403))
    def get(self, query: ItemQuery) -> Any:
        """List items, newest first"""
        return service.list_items(query.limit, query.cursor, query.q)

    @idempotent
    @bp.input(ItemIn, arg_name="item")
    @bp.output(ItemOut, status_code=201)
    @bp.doc(
        operation_id="create_item", responses=problem_responses(400, 401, 403, 409, 413, 415, 422)
    )
    def post(self, item: ItemIn) -> Any:
        """Create an item"""
        created = service.create_item(**item.model_dump())
        location = {"Location": url_for(".item", item_id=created.id)}
        return created, 201, {**location, **etag_header(etag_for(created.id, created.version))}


class ItemResource(MethodView):
    """`{prefix}/items/<id>`: one item."""

    decorators = [bp.auth_required(authenticated, roles=["items"])]

    @bp.output(ItemOut)
    @bp.doc(
        operation_id="get_item", responses=problem_responses(400, 401, 403, 404, status_304=True)
    )
    def get(self, item_id: uuid.UUID) -> Any:
        """Get one item"""
        item = service.get_item(item_id)
        etag = etag_for(item.id, item.version)
        return not_modified(etag) or (item, etag_header(etag))

    @bp.input(ItemReplace, arg_name="replacement")
    @bp.output(ItemOut)
    @bp.doc(operation_id="replace_item", responses=PRECONDITION_RESPONSES)
    def put(self, item_id: uuid.UUID, replacement: ItemReplace) -> Any:
        """Replace an item (every writable field is required)"""
        item = service.update_item(item_id, replacement.model_dump(), expected_version(item_id))
        return item, etag_header(etag_for(item.id, item.version))

    @bp.input(ItemPatch, arg_name="patch")
    @bp.output(ItemOut)
    @bp.doc(operation_id="update_item", responses=PRECONDITION_RESPONSES)
    def patch(self, item_id: uuid.UUID, patch: ItemPatch) -> Any:
        """Change some fields of an item"""
        item = service.update_item(item_id, patch.changes(), expected_version(item_id))
        return item, etag_header(etag_for(item.id, item.version))

    @bp.doc(
        operation_id="delete_item",
        responses={204: "Deleted", **problem_responses(400, 401, 403, 404, 409, 412)},
    )
    def delete(self, item_id: uuid.UUID) -> Response:
        """Delete an item"""
        service.delete_item(item_id, expected_version(item_id))
        return no_content()


bp.add_url_rule("/items", view_func=ItemCollection.as_view("items"))
bp.add_url_rule("/items/<uuid:item_id>", view_func=ItemResource.as_view("item"))
