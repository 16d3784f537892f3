"""Fixtures for the generated clients: the OpenAPI document as the app serves it, written
to a file the generators read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apiflask import APIFlask


def write_document(app: APIFlask, path: Path) -> Path:
    """The document `/openapi.json` serves, written to `path` (its `servers` say where this
    request went; a generated client is given its base URL instead)."""
    document = app.test_client().get("/openapi.json").json
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


@pytest.fixture(scope="module")
def document_file(app: APIFlask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_document(app, tmp_path_factory.mktemp("document") / "openapi.json")
