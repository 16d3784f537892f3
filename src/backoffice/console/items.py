"""Items: search, create, edit (with the API's If-Match rule), delete."""

from __future__ import annotations

import uuid
from typing import Any

from flask import render_template, request
from pydantic import ValidationError

from backoffice.console.pages import audit, back_to, bp, cursor_arg, field_errors, page_limit
from backoffice.errors import StaleVersion
from backoffice.items import service as items
from backoffice.items.schemas import ItemIn, ItemQuery, ItemReplace

#: Below this, an item's quantity is shown as low.
LOW_STOCK = 5
MESSAGES = {
    "created": "The item was created.",
    "saved": "The item was saved.",
    "deleted": "The item was deleted.",
}


def _item_form() -> dict[str, Any]:
    """The form as the schema reads it (quantity a whole number, when it is one)."""
    quantity: Any = request.form.get("quantity", "").strip()
    if quantity.lstrip("-").isdigit():
        quantity = int(quantity)
    description = request.form.get("description", "")
    return {
        "name": request.form.get("name", ""),
        "description": description if description.strip() else None,
        "quantity": quantity,
    }


@bp.get("/items")
def item_list() -> Any:
    try:
        query = ItemQuery.model_validate(
            {"q": request.args.get("q") or None, "cursor": cursor_arg(), "limit": page_limit()}
        )
    except ValidationError as error:
        return render_template("console/items.html", page=None, errors=field_errors(error)), 400
    page = items.list_items(query.limit, query.cursor, query.q)
    return render_template(
        "console/items.html",
        page=page,
        q=query.q or "",
        low_stock=LOW_STOCK,
        message=MESSAGES.get(request.args.get("done", "")),
    )


@bp.post("/items")
def item_create() -> Any:
    form = _item_form()
    try:
        new = ItemIn.model_validate(form)
    except ValidationError as error:
        page = render_template("console/item_new.html", form=form, errors=field_errors(error))
        return page, 422
    row = items.create_item(new.name, new.description, new.quantity)
    audit("item.create", item=str(row.id))
    return back_to("console.item_edit", "created", item_id=row.id)


@bp.get("/items/new")
def item_new() -> Any:
    return render_template("console/item_new.html", form={}, errors={})


@bp.get("/items/<uuid:item_id>")
def item_edit(item_id: uuid.UUID) -> Any:
    item = items.get_item(item_id)
    return render_template(
        "console/item_edit.html",
        item=item,
        form=item._asdict(),
        errors={},
        message=MESSAGES.get(request.args.get("done", "")),
    )


@bp.post("/items/<uuid:item_id>")
def item_save(item_id: uuid.UUID) -> Any:
    """Saved only if nobody else saved since the form was loaded (its `version`):
    otherwise the page says so and shows the current values beside what was typed."""
    form = _item_form()
    version = request.form.get("version", "")
    try:
        changes = ItemReplace.model_validate(form)
    except ValidationError as error:
        current = items.get_item(item_id)
        page = render_template(
            "console/item_edit.html", item=current, form=form, errors=field_errors(error)
        )
        return page, 422
    try:
        items.update_item(item_id, changes.model_dump(), int(version) if version.isdigit() else 0)
    except StaleVersion:
        current = items.get_item(item_id)
        page = render_template(
            "console/item_edit.html", item=current, form=form, errors={}, conflict=True
        )
        return page, 409
    audit("item.update", item=str(item_id))
    return back_to("console.item_edit", "saved", item_id=item_id)


@bp.post("/items/<uuid:item_id>/delete")
def item_delete(item_id: uuid.UUID) -> Any:
    version = request.form.get("version", "")
    try:
        items.delete_item(item_id, int(version) if version.isdigit() else 0)
    except StaleVersion:
        current = items.get_item(item_id)
        page = render_template(
            "console/item_edit.html", item=current, form=current._asdict(), errors={}, conflict=True
        )
        return page, 409
    audit("item.delete", item=str(item_id))
    return back_to("console.item_list", "deleted")
