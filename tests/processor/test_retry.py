"""Fixed-delay retry: attempt counts and timing, against a port where nothing listens."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from ib_async import IB

from event_processor.config import IBKRConfig, RetryConfig
from event_processor.core.metrics import ProcessorMetrics
from event_processor.services.ibkr_client import IBKRUnavailable, connect_ib
from event_processor.utils.retry import retry_with_config
from event_queue.redis_server import free_port

TOLERANCE = 0.15


class RefusedConnector:
    """Connects for real to a closed port, noting when each attempt starts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.starts: list[float] = []

    async def __call__(self) -> None:
        self.starts.append(time.monotonic())
        await asyncio.open_connection("127.0.0.1", self.port)


async def test_retries_max_retries_times_with_a_fixed_delay_then_reraises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connector = RefusedConnector()
    caplog.set_level(logging.WARNING, logger="event_processor.utils.retry")
    with pytest.raises(ConnectionRefusedError):
        await retry_with_config(connector, RetryConfig(max_retries=3, delay=0.2), "connect")
    assert len(connector.starts) == 4
    gaps = [b - a for a, b in zip(connector.starts, connector.starts[1:], strict=False)]
    assert all(0.2 <= gap < 0.2 + TOLERANCE for gap in gaps), gaps  # fixed: no growth, no jitter
    attempts = [r.attempt for r in caplog.records]  # type: ignore[attr-defined]
    assert attempts == [1, 2, 3, 4]
    assert "giving up" in caplog.records[-1].getMessage()


async def test_zero_retries_means_one_attempt_and_no_sleep() -> None:
    connector = RefusedConnector()
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        await retry_with_config(connector, RetryConfig(max_retries=0, delay=5), "connect")
    assert len(connector.starts) == 1
    assert time.monotonic() - started < 1


async def test_returns_the_first_success() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise OSError("not yet")
        return "connected"

    assert await retry_with_config(flaky, RetryConfig(max_retries=5, delay=0.01), "x") == "connected"
    assert calls == 3


async def test_errors_outside_retry_on_are_not_retried() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bad order")

    with pytest.raises(ValueError, match="bad order"):
        await retry_with_config(broken, RetryConfig(max_retries=3, delay=0.01), "order",
                                retry_on=(OSError,))
    assert calls == 1


async def test_ib_connection_fails_fast_after_the_configured_retries() -> None:
    port = free_port()
    config = IBKRConfig(host="127.0.0.1", port=port, connect_timeout=1,
                        connection_retry=RetryConfig(max_retries=2, delay=0.25))
    ib = IB()
    started = time.monotonic()
    with pytest.raises(IBKRUnavailable) as info:
        await connect_ib(ib, config)
    elapsed = time.monotonic() - started
    assert info.value.attempts == 3
    assert "ConnectionRefusedError" in info.value.reason
    assert 0.5 <= elapsed < 0.5 + 2 * TOLERANCE  # two fixed delays, then it gives up
    assert not ib.isConnected()


async def test_each_retry_is_reported_for_the_metrics() -> None:
    connector = RefusedConnector()
    retried: list[str] = []
    with pytest.raises(ConnectionRefusedError):
        await retry_with_config(connector, RetryConfig(max_retries=2, delay=0.01), "ibkr connect",
                                on_retry=retried.append)
    assert retried == ["ibkr connect", "ibkr connect"]  # two retries after the first attempt

    metrics = ProcessorMetrics()
    for operation in ("ibkr connect", "ibkr connect", "place order BUY 5 AAPL MKT"):
        metrics.retried(operation)
    text = metrics.render().decode()
    assert 'processor_ibkr_retries_total{operation="connect"} 2.0' in text
    assert 'processor_ibkr_retries_total{operation="order"} 1.0' in text
