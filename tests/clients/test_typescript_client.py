"""The TypeScript client (clients/typescript): its committed OpenAPI document is the one
the app serves, its committed types (`src/schema.d.ts`, openapi-typescript) are what that
document generates, and the usage code (`src/usage.ts`, openapi-fetch) type-checks against
them with `tsc`.

Run in a copy of the client in a temporary directory (`npm ci` from the lock file, the
npm cache used first), so a test run never writes into the checkout. Without Node.js and
npm the test is skipped on a laptop and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CLIENT = ROOT / "clients" / "typescript"
#: What the copy is made of: everything committed but the generated types.
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "src/usage.ts")

WRONG = """import type { components } from "./schema";
declare const problem: components["schemas"]["HTTPError"];
export const short = problem.shortages;
declare const item: components["schemas"]["ItemOut"];
export const price: number = item.price;
"""


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    if os.environ.get("CI") == "true":
        pytest.fail(
            "Node.js and npm are needed for the TypeScript client (apt-get install nodejs npm)"
        )
    pytest.skip("Node.js and npm are not installed")


def _run(command: list[str], cwd: Path) -> str:
    finished = subprocess.run(  # noqa: S603 - npm and its tools, on our own files
        command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert finished.returncode == 0, f"{command}:\n{finished.stdout}\n{finished.stderr}"
    return finished.stdout


def served_document(app: Any) -> dict[str, Any]:
    """The app's document without `servers` (the address a request reached)."""
    document = dict(app.test_client().get("/openapi.json").json)
    del document["servers"]
    return document


def test_the_committed_document_is_the_one_the_app_serves(app):
    committed = json.loads((CLIENT / "openapi.json").read_text())
    assert committed == served_document(app), "run `make clients` and commit the result"


def test_the_typescript_client_is_generated_from_the_document_and_type_checks(app, tmp_path):
    _, npm = _tools()
    for name in SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CLIENT / name, tmp_path / name)
    (tmp_path / "openapi.json").write_text(json.dumps(served_document(app)))
    _run([npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"], tmp_path)

    _run([npm, "run", "--silent", "generate"], tmp_path)
    fresh = (tmp_path / "src" / "schema.d.ts").read_text()
    assert fresh == (CLIENT / "src" / "schema.d.ts").read_text(), (
        "src/schema.d.ts is not what the document generates: run `make clients` and commit"
    )
    assert "ShortageProblem" in fresh

    _run([npm, "run", "--silent", "typecheck"], tmp_path)

    # The check has teeth: `shortages` read off any problem (not an order's 409), and a
    # field an item does not have, are errors.
    (tmp_path / "src" / "wrong.ts").write_text(WRONG)
    finished = subprocess.run(  # noqa: S603 - npm on our own files
        [npm, "run", "--silent", "typecheck"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    errors = finished.stdout + finished.stderr
    assert finished.returncode != 0
    assert "src/wrong.ts(3," in errors
    assert "src/wrong.ts(5," in errors
    assert "src/usage.ts" not in errors
