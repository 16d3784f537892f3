"""wrk: one run of an endpoint, its report parsed; warm-ups that must answer 2xx."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from bench import BENCH

THREADS = 1
CONNECTIONS = 50
#: wrk's own per-request timeout (its default); slower requests count as socket errors.
REQUEST_TIMEOUT = "2s"
MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
PERCENTILES = (50, 75, 90, 99)


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    path: str
    #: A wrk Lua script in bench/ (method, body, headers), or None for a plain GET.
    script: str | None = None
    #: Extra request headers ("Name: value"), e.g. the caller's Authorization.
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    requests: int
    rps: float
    latency_ms: dict[int, float]
    non_2xx: int
    socket_errors: int

    @property
    def p50(self) -> float:
        return self.latency_ms[50]


def wrk_params(duration: int, warmup: int, rounds: int) -> dict[str, object]:
    return {
        "threads": THREADS,
        "connections": CONNECTIONS,
        "duration_s_per_round": duration,
        "rounds": rounds,
        "warmup_s": warmup,
        "timeout": REQUEST_TIMEOUT,
        "latency": True,
    }


def combine(rounds: list[Result]) -> Result:
    """Requests and errors summed; req/s and latency percentiles averaged over the rounds."""
    count = len(rounds)
    return Result(
        requests=sum(r.requests for r in rounds),
        rps=sum(r.rps for r in rounds) / count,
        latency_ms={p: sum(r.latency_ms[p] for r in rounds) / count for p in PERCENTILES},
        non_2xx=sum(r.non_2xx for r in rounds),
        socket_errors=sum(r.socket_errors for r in rounds),
    )


def _to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)([a-z]+)", value)
    if match is None:
        raise RuntimeError(f"unexpected wrk latency: {value!r}")
    return float(match.group(1)) * MS_PER_UNIT[match.group(2)]


def _count(pattern: str, output: str) -> int:
    return sum(int(n) for n in re.findall(pattern, output))


def parse(output: str) -> Result:
    """The numbers from `wrk --latency`'s report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    # wrk pads a value to a column ("2.85s "): the trailing blanks are not the end of it.
    latency = dict(re.findall(r"^\s+(\d+)%\s+(\S+)[ \t]*$", output, re.MULTILINE))
    return Result(
        requests=_count(r"(\d+) requests in", output),
        rps=float(rps.group(1)),
        latency_ms={p: _to_ms(latency[str(p)]) for p in PERCENTILES},
        non_2xx=_count(r"Non-2xx or 3xx responses: (\d+)", output),
        socket_errors=_count(r"(?:connect|read|write|timeout) (\d+)", output),
    )


def wrk_command(
    executable: str, url: str, endpoint: Endpoint, seconds: int, connections: int = CONNECTIONS
) -> list[str]:
    """The wrk command line loading `url` + the endpoint's path for `seconds`."""
    script = ["-s", str(BENCH / endpoint.script)] if endpoint.script else []
    return [
        executable,
        f"-t{THREADS}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={REQUEST_TIMEOUT}",
        "--latency",
        *script,
        *(option for header in endpoint.headers for option in ("-H", header)),
        url + endpoint.path,
    ]


def wrk_output(url: str, endpoint: Endpoint, seconds: int, connections: int = CONNECTIONS) -> str:
    """wrk's report as printed (with whatever the endpoint's script prints in `done`)."""
    executable = shutil.which("wrk")
    if executable is None:
        raise RuntimeError("wrk is not installed: `sudo apt-get install -y wrk` (Debian/Ubuntu)")
    command = wrk_command(executable, url, endpoint, seconds, connections)
    done = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, check=True, timeout=seconds + 30
    )
    return done.stdout


def wrk(url: str, endpoint: Endpoint, seconds: int, connections: int = CONNECTIONS) -> Result:
    return parse(wrk_output(url, endpoint, seconds, connections))


def warm_up(base_url: str, endpoint: Endpoint, seconds: int) -> None:
    """Load the endpoint briefly, and refuse to measure one that does not answer 2xx."""
    trial = wrk(base_url, endpoint, seconds)
    if trial.requests == 0 or trial.non_2xx or trial.socket_errors:
        raise RuntimeError(
            f"{endpoint.label}: {trial.non_2xx} non-2xx answers and {trial.socket_errors} "
            f"socket errors in {trial.requests} warm-up requests"
        )
