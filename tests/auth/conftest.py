"""The Redis database this test worker owns, for limits and revocations kept in Redis."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
#: Where a test may keep its counters: the database (the default), the process, or Redis.
STORES = ["database", "memory", *(["redis"] if TEST_REDIS_URL else [])]


@pytest.fixture(scope="session")
def redis_url(worker_id: str) -> str:
    """TEST_REDIS_URL with this worker's own database index (the one its broker uses
    beside PostgreSQL), so concurrent test runs never count in each other's keys nor wipe
    them (`limiter.reset()` after every test clears the whole database's limits)."""
    assert TEST_REDIS_URL, "only for tests parametrized with the redis store"
    index = 1 + (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    return str(make_url(TEST_REDIS_URL).set(database=str(index)))
