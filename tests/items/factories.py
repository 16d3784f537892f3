from __future__ import annotations

from itertools import count
from typing import Any

from flask.testing import FlaskClient

_names = count(1)


def create_item(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    """Create an item through the API and return its body."""
    body = {"name": f"Item {next(_names)}", "quantity": 10, **fields}
    response = client.post("/api/items", json=body)
    assert response.status_code == 201, response.json
    return dict(response.json)
