"""Many clients at once, as many server processes would send them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def all_at_once(calls: Sequence[Callable[[], T]], timeout: float = 120) -> list[T]:
    """Run each call in a thread of its own, all released together by a barrier; their
    results, in the order of `calls`. A call that raises fails the test."""
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls))

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = calls[n]()
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a call did not finish"
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]
