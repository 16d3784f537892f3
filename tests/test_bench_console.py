"""The console bench's pure parts: its options and the aims it checks (the tiny real run
is `python -m bench.console --items 1000 --events 10000`, left to the lead)."""

from __future__ import annotations

from bench.console import DEEP_RATIO, P50_MS, aims, parse_args


def page(p50: float, statuses: list[int] | None = None) -> dict[str, object]:
    return {"path": "/", "p50_ms": p50, "p99_ms": p50 * 2, "statuses": statuses or [200]}


def test_the_defaults_are_the_issues_sizes():
    args = parse_args([])
    assert (args.items, args.events) == (100_000, 1_000_000)
    assert parse_args(["--items", "1000", "--events", "10000"]).events == 10_000


def test_every_page_under_50_ms_and_deep_pages_within_1_2_of_the_first():
    held = aims(
        {
            "overview": page(P50_MS - 1),
            "item: first page": page(10.0),
            "item: deep page": page(10.0 * DEEP_RATIO),
        }
    )
    assert all(aim["ok"] for aim in held)
    missed = aims(
        {
            "overview": page(P50_MS),
            "item: first page": page(10.0),
            "item: deep page": page(12.1, [200, 500]),
        }
    )
    assert [aim["ok"] for aim in missed] == [False, True, True, False, False]
