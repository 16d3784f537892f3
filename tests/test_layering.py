"""The layering is a lint that fails (docs/architecture/layout.md): a copy of the code with one
violation planted per rule fails `make lint`'s checks naming it, and the copy as it is passes.

Rule 1, HTTP only in views and the HTTP modules: Ruff's banned-api (TID251). Rules 2 and 3,
capabilities through each other's service and shared modules importing no capability:
import-linter, with the contract type in lint/capabilities.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

#: What a copy needs for both checks: the code, the contract type and the configuration.
COPIED = ("src", "lint", "pyproject.toml")
PACKAGE = Path("src/backoffice")
THROUGH_SERVICE = "Capabilities meet only through each other's service:"
SHARED = "Shared modules import no capability:"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


def plant(copy: Path, module: str, line: str) -> None:
    """Add `line` to `module` (a path under src/backoffice/) after its docstring."""
    path = copy / PACKAGE / module
    text = path.read_text()
    marker = "from __future__ import annotations\n"
    assert marker in text, f"{module} has no __future__ import to plant after"
    path.write_text(text.replace(marker, f"{marker}\n{line}\n", 1))


def run(copy: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """`command` in the copy, with the copy's package imported (not the installed one)."""
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(  # noqa: S603 (our own tools)
        command, cwd=copy, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def ruff(copy: Path) -> subprocess.CompletedProcess[str]:
    return run(copy, sys.executable, "-m", "ruff", "check", "--no-cache", ".")


def lint_imports(copy: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("lint-imports")
    return run(copy, str(script), "--no-logo", "--no-cache")


def test_the_code_as_it_is_passes_both(copy):
    checked = ruff(copy)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = lint_imports(copy)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 broken" in checked.stdout


def test_http_in_a_service_fails_ruff_naming_it(copy):
    plant(copy, "items/service.py", "from flask import request")
    checked = ruff(copy)
    assert checked.returncode == 1
    assert "TID251 `flask.request` is banned" in checked.stdout
    assert "src/backoffice/items/service.py" in checked.stdout


def test_a_capability_reaching_past_another_ones_service_fails_naming_it(copy):
    plant(copy, "items/service.py", "from backoffice.orders.models import Order")
    checked = lint_imports(copy)
    assert checked.returncode == 1
    rule = checked.stdout.index(THROUGH_SERVICE)
    assert "- backoffice.items.service -> backoffice.orders.models (l." in checked.stdout[rule:]
    assert "1 broken" in checked.stdout


def test_a_shared_module_importing_a_capability_fails_naming_it(copy):
    plant(copy, "pagination.py", "from backoffice.items import service")
    checked = lint_imports(copy)
    assert checked.returncode == 1
    rule = checked.stdout.index(SHARED)
    assert "- backoffice.pagination -> backoffice.items.service (l." in checked.stdout[rule:]


def test_a_new_subpackage_must_be_declared_a_capability_or_shared(copy):
    reports = copy / PACKAGE / "reports"
    reports.mkdir()
    (reports / "__init__.py").write_text('"""Reports."""\n')
    (reports / "views.py").write_text("from backoffice.items import service\n")
    checked = lint_imports(copy)
    assert checked.returncode == 1
    assert "- backoffice.reports: a subpackage, declared neither" in checked.stdout
