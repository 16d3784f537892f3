"""A tutorial Flask items API kept in a dict: no database, no validation library, no logs.

Every worker process pre-fills the same items (ids derived from their number), so any
worker can answer for `prefilled_id(n)`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from flask import Flask, abort, request

PREFILLED = 1000

app = Flask(__name__)
items: dict[str, dict[str, Any]] = {}


def prefilled_id(n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"item-{n}"))


def add_item(new_id: str, name: str, quantity: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    item = {
        "id": new_id,
        "name": name,
        "description": None,
        "quantity": quantity,
        "created_at": now,
        "updated_at": now,
    }
    items[new_id] = item
    return item


for n in range(PREFILLED):
    add_item(prefilled_id(n), f"Demo item {n + 1}", n % 500)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "healthy"}


@app.get("/items/<item_id>")
def get_item(item_id: str) -> dict[str, Any]:
    if item_id not in items:
        abort(404)
    return items[item_id]


@app.post("/items")
def create_item() -> tuple[dict[str, Any], int]:
    data = request.get_json()
    if not isinstance(data, dict) or "name" not in data:
        abort(400)
    return add_item(str(uuid.uuid4()), data["name"], data.get("quantity", 0)), 201


@app.get("/items")
def list_items() -> dict[str, Any]:
    limit = min(request.args.get("limit", 25, type=int), 100)
    return {"data": list(islice(reversed(items.values()), limit))}
