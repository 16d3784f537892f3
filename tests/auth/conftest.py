"""The Redis database this test worker owns, for limits kept in Redis."""

from __future__ import annotations

import os

import pytest
from sqlalchemy.engine import make_url

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


@pytest.fixture(scope="session")
def redis_url(redis_index: int) -> str:
    """TEST_REDIS_URL with this worker's own database index (`redis_index`):
    `limiter.reset()` after every test clears the whole database's limits."""
    assert TEST_REDIS_URL, "only for tests parametrized with the redis store"
    return str(make_url(TEST_REDIS_URL).set(database=str(redis_index)))
