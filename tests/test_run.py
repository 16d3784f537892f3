"""`make run` once per instance folder and port (`backoffice.run`): a second one is
refused with one line and a non-zero exit while the first serves on, and a lock left
behind by a crash does not block the next start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from backoffice.run import LOCK_FILE
from tests.support import ROOT, eventually, free_port, healthy, process_environment

#: A fresh start migrates a new SQLite database and imports the app several times.
START = 180


def make_run(port: int, instance) -> list[str]:
    """`make run` with this port and instance folder, as a newcomer would type it."""
    return ["make", "--no-print-directory", "run", f"PORT={port}", f"INSTANCE_PATH={instance}"]


def run_refused(port: int, instance) -> subprocess.CompletedProcess:
    """A `make run` that is expected to stop at once: its exit and output."""
    return subprocess.run(  # noqa: S603 (our own Makefile)
        make_run(port, instance),
        cwd=ROOT,
        env=process_environment(),
        capture_output=True,
        text=True,
        timeout=START,
    )


def refusal(answer: subprocess.CompletedProcess) -> list[str]:
    """The launcher's own lines (make adds its `Error 1` line after them)."""
    return [line for line in answer.stderr.splitlines() if line.startswith("make run: ")]


@pytest.fixture
def first(tmp_path) -> Iterator[tuple[int, subprocess.Popen]]:
    """A real `make run` (API and worker) on a free port; stopped as Ctrl-C would."""
    port = free_port()
    log = (tmp_path / "first.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 (our own Makefile)
        make_run(port, tmp_path / "instance"),
        cwd=ROOT,
        env=process_environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        eventually(lambda: process.poll() is not None or healthy(port), timeout=START)
        assert process.poll() is None, (tmp_path / "first.log").read_text()
        yield port, process
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
        eventually(lambda: not healthy(port), timeout=30)  # nothing was left behind


@pytest.mark.worker
def test_a_second_make_run_is_refused_while_the_first_serves(first, tmp_path):
    port, process = first
    second = run_refused(port, tmp_path / "instance")
    assert second.returncode != 0
    assert "Traceback" not in second.stderr
    [line] = refusal(second)
    assert line.startswith(f"make run: already running from {tmp_path / 'instance'} (process ")
    assert healthy(port)  # the first serves on
    assert process.poll() is None


def test_make_run_refuses_a_port_another_program_listens_on(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        answer = run_refused(port, tmp_path / "instance")
    assert answer.returncode != 0
    [line] = refusal(answer)
    assert line.startswith(f"make run: cannot listen on 127.0.0.1:{port} ")
    assert "make run PORT=" in line
    assert not (tmp_path / "instance" / "backoffice.db").exists()  # refused before migrating


HOLD = """
import sys
from pathlib import Path
from backoffice.run import hold_instance
hold_instance(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()
"""


def test_a_crashed_make_run_leaves_no_lock_that_blocks_the_next(tmp_path):
    """The lock is the kernel's (flock): it ends with the process holding it, however it
    ends. A process holding it is killed outright; the next one takes it at once."""
    instance = tmp_path / "instance"
    with subprocess.Popen(  # noqa: S603 (this interpreter)
        [sys.executable, "-c", HOLD, str(instance)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        blocked = subprocess.run(  # noqa: S603 (this interpreter)
            [sys.executable, "-c", HOLD, str(instance)], capture_output=True, text=True, timeout=60
        )
        assert blocked.returncode == 1
        assert f"(process {holder.pid})" in blocked.stderr
        holder.send_signal(signal.SIGKILL)
    assert (instance / LOCK_FILE).exists()  # left behind, as after a crash
    after = subprocess.run(  # noqa: S603 (this interpreter)
        [sys.executable, "-c", HOLD, str(instance)],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout == "held\n"
