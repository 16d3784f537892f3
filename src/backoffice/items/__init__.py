"""Inventory items: `{prefix}/items`."""

from apiflask import APIBlueprint

bp = APIBlueprint("items", __name__, tag="Items")

from backoffice.items import routes as routes  # noqa: E402  (registers the views on bp)
