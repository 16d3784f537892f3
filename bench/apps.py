"""What is measured: Backoffice's endpoints and the two references' matching ones."""

from __future__ import annotations

from dataclasses import dataclass

from bench import tools, webhooks
from bench.database import DEEP_ROWS, Fixtures
from bench.load import Endpoint
from bench.reference_flask import PREFILLED, prefilled_id
from bench.servers import BACKOFFICE, TOY_SERVER


@dataclass(frozen=True)
class App:
    name: str
    target: str
    endpoints: tuple[Endpoint, ...]
    #: Served by this server whatever the run's `--server` (the toy's tutorial shape).
    server: str | None = None


def backoffice(fixtures: Fixtures) -> App:
    """Reads first, the write last (after round 1, the first page shows written items)."""
    deep = f"/api/items?limit=25&cursor={fixtures.deep_cursor}"
    auth = (f"Authorization: Bearer {fixtures.access_token}",)
    return App(
        "backoffice",
        BACKOFFICE,
        (
            Endpoint("health", "GET /health", "/health"),
            Endpoint("item", "GET /api/items/<id>", f"/api/items/{fixtures.item_id}", None, auth),
            tools.process_endpoint(fixtures.api_key),
            Endpoint("list", "GET /api/items?limit=25", "/api/items?limit=25", None, auth),
            Endpoint("deep", f"GET /api/items?limit=25 ({DEEP_ROWS:,} deep)", deep, None, auth),
            Endpoint("create", "POST /api/items", "/api/items", "post_item.lua", auth),
            Endpoint("order", "POST /api/orders (one line)", "/api/orders", "post_order.lua", auth),
            Endpoint(
                "webhook",
                "POST /api/webhooks/bench (signed)",
                f"/api/webhooks/{webhooks.SOURCE}",
                "post_webhook.lua",
            ),
        ),
    )


RAW = App("raw", "bench.reference_raw:app", (Endpoint("health", "GET /health", "/health"),))

_FLASK_ENDPOINTS = (
    Endpoint("health", "GET /health", "/health"),
    Endpoint("item", "GET /items/<id>", f"/items/{prefilled_id(PREFILLED // 2)}"),
    Endpoint("list", "GET /items?limit=25", "/items?limit=25"),
    Endpoint("create", "POST /items", "/items", "post_item.lua"),
)
#: The in-memory Flask app under the same server as Backoffice.
FLASK = App("flask", "bench.reference_flask:app", _FLASK_ENDPOINTS)
#: The same app as the tutorials serve it (Gunicorn, 4 sync workers): what their readers
#: would compare Backoffice with.
TOY = App("toy", "bench.reference_flask:app", _FLASK_ENDPOINTS, server=TOY_SERVER)

#: The Flask reference endpoint each Backoffice endpoint is compared to (default: same key).
FLASK_MATCH = {"deep": "list", "webhook": "create", "order": "create", "process": "item"}
