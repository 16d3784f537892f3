"""Inventory items: `{prefix}/items`."""
