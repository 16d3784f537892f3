"""The restart bench's pure parts: the CPU a process group used, read from /proc, and the
figures it reports (no server is started here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.restart import (
    PROBES,
    Restart,
    group_cpu_seconds,
    stat_fields,
    summarize,
)

#: A `/proc/<pid>/stat` line whose command name holds a blank and a parenthesis.
STAT = (
    "4242 (granian (x) w) S 4200 4242 4242 0 -1 4194560 100 0 0 0 "
    "150 30 7 3 20 0 5 0 1000 2000000 3000 18446744073709551615"
)


def test_a_stat_line_gives_the_process_group_and_the_ticks_with_waited_children():
    assert stat_fields(STAT) == (4242, 150 + 30 + 7 + 3)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_this_process_group_has_used_some_cpu():
    group, ticks = stat_fields(Path("/proc/self/stat").read_text())
    assert group == os.getpgrp()
    assert ticks >= 0
    assert group_cpu_seconds(os.getpgrp()) > 0


def test_each_figure_is_summarized_over_the_rounds():
    rounds = [Restart(1.0, 1.2, 1.3, 2.5), Restart(3.0, 3.1, 3.4, 2.7), Restart(2.0, 2.2, 2.4, 2.6)]
    found = summarize(rounds)
    assert set(found) == {f"{probe}_s" for probe in PROBES} | {"cpu_s"}
    assert found["item_s"] == {"median": 2.4, "min": 1.3, "max": 3.4, "rounds": [1.3, 3.4, 2.4]}
    assert found["cpu_s"]["median"] == 2.6
