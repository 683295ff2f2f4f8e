"""Shared test harness: a private real Redis server for the session, flushed before each test.

Every test that uses Redis through these fixtures ends with the queue invariant check (each dedup key
belongs to exactly one live event and each live event's key is present), unless it is marked
``allow_inconsistent`` because it corrupts the state on purpose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings

from event_queue import EventQueue
from event_queue.invariants import assert_consistent
from event_queue.redis_server import RedisServer

# Generated tests check results, not speed (that is bench/'s job): on a shared, loaded machine one
# example may take longer than Hypothesis's 200 ms deadline, or generation may look slow, without
# anything being wrong.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_inconsistent: the test corrupts queue state on purpose"
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server for the whole run (AOF ``appendfsync always``, as in production)."""
    server = RedisServer(appendfsync="always").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_client(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[aioredis.Redis]:
    """A client on the session's server, flushed before the test, checked after it."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    if request.node.get_closest_marker("allow_inconsistent") is None:
        await assert_consistent(client)
    await client.aclose()


@pytest.fixture
def redis_url(redis_server: RedisServer, redis_client: aioredis.Redis) -> str:
    """The URL of a flushed server whose state is checked after the test."""
    return redis_server.url


@pytest.fixture
async def queue(redis_client: aioredis.Redis, redis_url: str) -> AsyncIterator[EventQueue]:
    """An EventQueue with a short lease, for tests."""
    q = EventQueue.from_url(redis_url, lease_seconds=2.0)
    yield q
    await q.close()
