"""The files a newcomer expects in a project, held to what they claim: `make help` lists
every target, pre-commit runs exactly `make lint`'s and `make typecheck`'s commands, the
GitHub workflow runs `.ci/run` (and GitHub's schema accepts it), the changelog follows
Keep a Changelog and names the current version, the license is MIT."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
TARGET = re.compile(r"^([a-zA-Z0-9_-]+):", re.MULTILINE)


def recipe(target: str) -> list[str]:
    """A Makefile target's recipe lines, without the tab."""
    lines = MAKEFILE.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        commands.append(line.removeprefix("\t"))
    return commands


def phony_targets() -> set[str]:
    declared = re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.MULTILINE)
    assert declared is not None
    return set(declared[1].split())


def make_help() -> dict[str, str]:
    """`make help`'s lines as {target: description}."""
    environment = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL"}}
    shown = subprocess.run(
        ["make", "--no-print-directory", "-s", "help"],  # noqa: S607 (make, from PATH)
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.strip().split(None, 1) for line in shown.stdout.splitlines())


def test_make_help_describes_every_target() -> None:
    described = make_help()
    assert set(described) == phony_targets()
    assert all(text.strip() for text in described.values())
    assert described["run"].startswith("Serve the API")


def test_a_bare_make_still_serves() -> None:
    """`help` is there to ask for; the first target, the default goal, stays `run`."""
    assert TARGET.findall(MAKEFILE)[0] == "run"


def pre_commit_hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks: list[dict[str, Any]] = config["repos"][0]["hooks"]
    return hooks


def test_pre_commit_runs_the_makefiles_linters_and_mypy_from_the_lock() -> None:
    makefile_commands = [
        command.replace("$(UV) run ", "uv run ") for command in recipe("lint") + recipe("typecheck")
    ]
    hooks = pre_commit_hooks()
    assert [hook["entry"] for hook in hooks] == makefile_commands
    for hook in hooks:
        assert hook["entry"].startswith("uv run "), hook["id"]  # versions from uv.lock
        assert hook["language"] == "unsupported", hook["id"]  # pre-commit 4.4's name for system
        assert hook["pass_filenames"] is False, hook["id"]  # the whole tree, as make lint


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_the_workflow_runs_ci_run_beside_postgres_and_redis() -> None:
    document = workflow()
    triggers = document[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"push", "pull_request"}
    assert document["permissions"] == {"contents": "read"}
    (job,) = document["jobs"].values()
    assert [step["run"] for step in job["steps"] if "run" in step] == ["bash .ci/run"]
    assert set(job["services"]) == {"postgres", "redis"}
    assert "@postgres:5432/" in job["env"]["TEST_DATABASE_URL"]
    assert job["env"]["TEST_REDIS_URL"].startswith("redis://redis:6379/")
    assert job["container"]["image"].startswith("python:3.11-")  # requires-python's floor
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_github_accepts_the_workflow() -> None:
    """GitHub's workflow schema, as check-jsonschema vendors it (no network)."""
    checked = subprocess.run(  # noqa: S603 (our own tool, our file)
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


KEEP_A_CHANGELOG_KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_changelog_keeps_a_changelog_and_names_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    releases = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert releases[0] == "Unreleased"
    assert version in releases
    kinds = set(re.findall(r"^### (.+)$", text, re.MULTILINE))
    assert kinds <= KEEP_A_CHANGELOG_KINDS
    policy = text.split("## [Unreleased]")[0]
    for promise in ("Breaking", "Not breaking", "Deprecation", "`Deprecation`", "`Sunset`"):
        assert promise in policy


def test_the_license_is_mit_and_the_package_says_so() -> None:
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n")
    assert "Copyright (c) 2026 Backoffice authors" in license_text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
