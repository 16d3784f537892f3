"""The login-storm bench's pure parts: its wrk command lines, the status mix its Lua
script prints, and the aims checked (no load is run here)."""

from __future__ import annotations

import re

from bench import BENCH
from bench.database import EMAIL
from bench.load import CONNECTIONS, Endpoint, Result, wrk_command
from bench.storm import READ_CONNECTIONS, aims, statuses, storm_endpoint


def result(rps: float, p99: float) -> Result:
    latency = {50: 1.0, 75: 2.0, 90: 3.0, 99: p99}
    return Result(requests=int(rps), rps=rps, latency_ms=latency, non_2xx=0, socket_errors=0)


def test_the_connections_are_the_commands_and_fifty_by_default():
    read = Endpoint("item", "GET /api/items/<id>", "/api/items/1", None, ("Authorization: x",))
    assert f"-c{CONNECTIONS}" in wrk_command("wrk", "http://h", read, 5)
    command = wrk_command("wrk", "http://h", read, 5, READ_CONNECTIONS)
    assert command[:4] == ["wrk", "-t1", "-c20", "-d5s"]
    assert command[-3:] == ["-H", "Authorization: x", "http://h/api/items/1"]


def test_the_storm_posts_the_fixture_members_email_to_the_login_endpoint():
    storm = storm_endpoint("/api")
    assert storm.path == "/api/auth/token"
    assert storm.script is not None
    script = (BENCH / storm.script).read_text()
    assert re.search(rf'"email": "{re.escape(EMAIL)}"', script)
    assert "-s" in wrk_command("wrk", "http://h", storm, 7, 50)


def test_the_status_mix_is_read_from_the_scripts_lines_after_the_report():
    output = "Requests/sec:   1103.40\nTransfer/sec: 4.79MB\nstatus 429: 5500\nstatus 401: 5\n"
    assert statuses(output) == {429: 5500, 401: 5}
    assert statuses("Requests/sec:   1103.40\n") == {}


def test_the_aims_hold_at_six_tenths_of_solo_and_a_p99_under_100_ms():
    solo = result(1000.0, 40.0)
    held = aims(solo, result(600.0, 99.9), {429: 990, 401: 10})
    assert [a["ok"] for a in held] == [True, True, True]
    missed = aims(solo, result(599.0, 100.0), {429: 90, 401: 10})
    assert [a["ok"] for a in missed] == [False, False, False]
    assert missed[0]["value"] == 0.599
