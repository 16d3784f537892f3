"""`bench.load.parse` reads wrk's report whatever unit its latencies are printed in.

wrk pads each value to a column: a latency in seconds is printed `"2.85s "`, with a
trailing blank that an earlier parser took for part of the line and failed on.
"""

from __future__ import annotations

import pytest

from bench.load import parse

REPORT = """Running 5s test @ http://127.0.0.1:8000/api/items
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     {avg}    2.28ms  24.94ms   93.77%
    Req/Sec     1.10k   138.78     1.34k    63.64%
  Latency Distribution
     50%  {p50}
     75%  {p75}
     90%  {p90}
     99%  {p99}
  5507 requests in 5.09s, 5.24MB read
{errors}Requests/sec:   1103.40
Transfer/sec:      4.79MB
"""


@pytest.mark.parametrize(
    ("values", "expected_ms"),
    [
        (("  1.46ms", "  1.89ms", "  3.28ms", " 14.62ms"), (1.46, 1.89, 3.28, 14.62)),
        ((" 812.00us", " 950.00us", "  1.02ms", "  2.00ms"), (0.812, 0.95, 1.02, 2.0)),
        (("  1.46ms", "  1.89ms", "    2.85s ", "    3.10s "), (1.46, 1.89, 2850.0, 3100.0)),
        (("    1.00s ", "    1.50s ", "    1.20m ", "    2.00m "), (1000, 1500, 72000, 120000)),
    ],
    ids=["ms", "us", "seconds-padded", "minutes-padded"],
)
def test_latencies_in_every_unit_are_read_in_milliseconds(values, expected_ms):
    p50, p75, p90, p99 = values
    result = parse(REPORT.format(avg="2.05ms", p50=p50, p75=p75, p90=p90, p99=p99, errors=""))
    assert result.latency_ms == pytest.approx(dict(zip((50, 75, 90, 99), expected_ms, strict=True)))
    assert (result.requests, result.rps) == (5507, 1103.40)
    assert (result.non_2xx, result.socket_errors) == (0, 0)


def test_errors_are_counted():
    errors = "  Socket errors: connect 0, read 3, write 0, timeout 7\n"
    errors += "  Non-2xx or 3xx responses: 12\n"
    report = REPORT.format(
        avg="2.05ms", p50="1.0ms", p75="1.0ms", p90="1.0ms", p99="1.0ms", errors=errors
    )
    result = parse(report)
    assert (result.non_2xx, result.socket_errors) == (12, 10)


def test_a_report_without_a_rate_is_an_error_not_a_zero():
    with pytest.raises(RuntimeError, match="unexpected wrk output"):
        parse("unable to connect to 127.0.0.1:8000 Connection refused\n")
