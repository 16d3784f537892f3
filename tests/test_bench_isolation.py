"""The isolation bench's pure parts (no load is run here; the guarantee itself is tested
against a real deploy/serve in tests/test_isolation.py)."""

from __future__ import annotations

from bench.isolation import P99_MS, TOPOLOGIES, p99
from bench.load import Result
from bench.servers import BACKOFFICE, BACKOFFICE_WSGI, WSGI_UNDER_GRANIAN, settings


def result(requests: int, p99_ms: float) -> Result:
    latency = {50: 1.0, 75: 2.0, 90: 3.0, 99: p99_ms}
    return Result(
        requests=requests, rps=requests / 5, latency_ms=latency, non_2xx=0, socket_errors=0
    )


def test_a_read_that_was_hardly_answered_has_no_p99_to_pass_on():
    assert p99(result(5000, 12.5)) == 12.5
    # Reads stuck behind slow clients never finish, so wrk reports the few that did.
    assert p99(result(3, 1.7)) == float("inf")
    assert not p99(result(3, 1.7)) < P99_MS


def test_the_topologies_are_the_front_and_the_old_wsgi_interface_unbounded():
    assert TOPOLOGIES["current"] == (BACKOFFICE, {})
    target, settings_ = TOPOLOGIES["before"]
    assert target == BACKOFFICE_WSGI
    assert int(settings_["CHAT_CALLS_PER_PROCESS"]) < int(settings_["SERVER_THREADS"])


def test_granian_wsgi_is_recorded_as_granians_wsgi_interface():
    assert settings("granian")["GRANIAN_INTERFACE"] == "rsgi"
    recorded = settings("granian-wsgi")
    assert recorded["server"] == "granian-wsgi"
    assert {k: recorded[k] for k in WSGI_UNDER_GRANIAN} == WSGI_UNDER_GRANIAN
