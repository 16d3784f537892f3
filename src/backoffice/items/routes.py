from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
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
from backoffice.output import fields_of, json_answer
from backoffice.pagination import rows_page_response

bp = APIBlueprint("items", __name__, tag="Items")


@bp.get("/items")
@bp.auth_required(authenticated, roles=["items"])
@bp.input(ItemQuery, location="query", arg_name="query")
@bp.output(ItemList)
@bp.doc(responses=problem_responses(400, 401, 403))
def list_items(query: ItemQuery) -> Any:
    """List items, newest first"""
    return rows_page_response(service.list_items(query.limit, query.cursor, query.q), ItemOut)


@bp.post("/items")
@bp.auth_required(authenticated, roles=["items"])
@idempotent
@bp.input(ItemIn, arg_name="item")
@bp.output(ItemOut, status_code=201)
@bp.doc(responses=problem_responses(400, 401, 403, 409, 413, 415, 422))
def create_item(item: ItemIn) -> Any:
    """Create an item"""
    created = service.create_item(**item.model_dump())
    headers = {
        "Location": url_for(".get_item", item_id=created.id),
        **etag_header(etag_for(created.id, created.version)),
    }
    return json_answer(fields_of(created, ItemOut), 201, headers)


@bp.get("/items/<uuid:item_id>")
@bp.auth_required(authenticated, roles=["items"])
@bp.output(ItemOut)
@bp.doc(responses=problem_responses(400, 401, 403, 404, status_304=True))
def get_item(item_id: uuid.UUID) -> Any:
    """Get one item"""
    item = service.get_item(item_id)
    etag = etag_for(item.id, item.version)
    return not_modified(etag) or json_answer(fields_of(item, ItemOut), 200, etag_header(etag))


@bp.put("/items/<uuid:item_id>")
@bp.auth_required(authenticated, roles=["items"])
@bp.input(ItemReplace, arg_name="replacement")
@bp.output(ItemOut)
@bp.doc(responses=PRECONDITION_RESPONSES)
def replace_item(item_id: uuid.UUID, replacement: ItemReplace) -> Any:
    """Replace an item (every writable field is required)"""
    item = service.update_item(item_id, replacement.model_dump(), expected_version(item_id))
    return item, 200, etag_header(etag_for(item.id, item.version))


@bp.patch("/items/<uuid:item_id>")
@bp.auth_required(authenticated, roles=["items"])
@bp.input(ItemPatch, arg_name="patch")
@bp.output(ItemOut)
@bp.doc(responses=PRECONDITION_RESPONSES)
def update_item(item_id: uuid.UUID, patch: ItemPatch) -> Any:
    """Change some fields of an item"""
    item = service.update_item(item_id, patch.changes(), expected_version(item_id))
    return item, 200, etag_header(etag_for(item.id, item.version))


@bp.delete("/items/<uuid:item_id>")
@bp.auth_required(authenticated, roles=["items"])
@bp.doc(responses={204: "Deleted", **problem_responses(400, 401, 403, 404, 409, 412)})
def delete_item(item_id: uuid.UUID) -> Response:
    """Delete an item"""
    service.delete_item(item_id, expected_version(item_id))
    return no_content()
