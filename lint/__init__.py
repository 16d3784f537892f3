"""Checks `make lint` runs beside Ruff: dev tools, never shipped with the app."""
