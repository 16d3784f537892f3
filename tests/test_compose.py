"""compose.yaml runs what the Procfile runs, and migrates once, in a one-shot service.

The Procfile (`make run`) is what the suite exercises; compose is what deploys. Where they
would drift unseen (the worker's Celery pool, where migrations run), these tests hold
them together. The Compose Specification's JSON schema checks the file, and so does
`docker compose config` (or the older `docker-compose config`), which also resolves the
variables.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
UPGRADE = "db upgrade"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def command_text(service: dict[str, Any]) -> str:
    """A service's command as one string ("" when it runs the image's CMD)."""
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def celery_argv(shell: str) -> list[str]:
    """The words of a shell command line from `celery` on (its `exec`, `&&` before it,
    and a variable assignment in front of it left out)."""
    words = shlex.split(shell)
    assert "celery" in words, f"no celery command in {shell!r}"
    return words[words.index("celery") :]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_the_worker_runs_the_procfiles_celery_command() -> None:
    compose_worker = celery_argv(command_text(services()["worker"]))
    assert compose_worker == celery_argv(procfile()["worker"])
    pool = compose_worker[compose_worker.index("--pool") + 1]
    assert pool == "threads"


def test_one_one_shot_service_migrates_and_the_app_waits_for_it() -> None:
    found = services()
    migrating = [name for name, service in found.items() if UPGRADE in command_text(service)]
    assert migrating == ["migrate"]
    migrate = found["migrate"]
    assert migrate["restart"] == "no"
    assert "volumes" not in migrate  # its metric files stay out of the api's /metrics
    for name in ("api", "worker"):
        waits = found[name]["depends_on"]["migrate"]
        assert waits == {"condition": "service_completed_successfully"}, name


def test_nothing_else_runs_the_migrations() -> None:
    """The image's CMD (what api runs) and deploy/serve only serve; `make run`'s starter
    still migrates, on a laptop, before it starts the server."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if not line.startswith("#")]
    assert not [line for line in instructions if UPGRADE in line]
    assert 'CMD ["deploy/serve"]' in instructions
    assert UPGRADE not in (ROOT / "deploy" / "serve").read_text()
    assert UPGRADE not in " ".join(procfile().values())
    assert '["flask", "db", "upgrade"]' in (ROOT / "src" / "backoffice" / "run.py").read_text()


def test_the_file_follows_the_compose_specification() -> None:
    """The Compose Specification's schema, as check-jsonschema vendors it (no network)."""
    checked = subprocess.run(  # noqa: S603 (our own tool, our file)
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def compose_command() -> list[str] | None:
    """`docker compose` (v2) when the plugin answers, else `docker-compose` (v1), else None."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(  # noqa: S603 (a fixed command)
            [docker, "compose", "version"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def test_compose_accepts_the_file() -> None:
    command = compose_command()
    if command is None:
        message = "neither `docker compose` nor `docker-compose` is installed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    environment = {**os.environ, "SECRET_KEY": "x" * 32}
    checked = subprocess.run(  # noqa: S603 (a fixed command)
        [*command, "--file", str(ROOT / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
