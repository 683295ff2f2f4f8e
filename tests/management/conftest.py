"""Fixtures: the management service served by real uvicorn (uvloop + httptools) on a free port.

The server runs in its own thread and event loop, as it would in its own process; tests talk to it
over HTTP with httpx and play the processor through the real queue client (``queue`` fixture).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from event_queue import Event, EventQueue, ExecCommand, NewEvent
from event_queue.redis_server import free_port
from management_service.app import create_app
from management_service.config import Settings

API_KEY = "test-mutation-key-0123456789"
READ_KEY = "test-read-key-0123456789abc"
ACCOUNTS = ("DU1111111", "DU2222222", "DU3333333")
DISABLED_ACCOUNT = "DU9999999"


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings for a test: the given Redis, the test key, fast health checks."""
    values: dict[str, Any] = {
        "redis_connection": redis_url,
        "MANAGEMENT_API_KEY": API_KEY,
        "health": {"processor_window_seconds": 5, "timeout_seconds": 1.5},
        "redis_timeout_seconds": 0.5,
    }
    values.update(overrides)
    return Settings.model_validate(values)


class ServerThread:
    """uvicorn serving one app in a background thread."""

    def __init__(self, settings: Settings, *, app: ASGIApp | None = None) -> None:
        """Serve the app built from ``settings``, or ``app`` (another way to serve it)."""
        self.port = free_port()
        config = uvicorn.Config(
            app or create_app(settings), host="127.0.0.1", port=self.port, loop="uvloop",
            http="httptools", ws="none", lifespan="on", log_config=None, access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("management service did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serving(settings: Settings) -> Iterator[ServerThread]:
    """Serve an app built from ``settings`` for the duration of the block."""
    server = ServerThread(settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    """An accounts file with three enabled accounts and one disabled."""
    lines = ["accounts:"] + [f"  - account_id: {a}" for a in ACCOUNTS]
    lines += [f"  - account_id: {DISABLED_ACCOUNT}", "    enabled: false"]
    path = tmp_path / "accounts.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def start_service(redis_url: str, accounts_file: Path) -> Iterator[Callable[..., str]]:
    """Start a service with setting overrides; returns its base URL. Stopped after the test."""
    servers: list[ServerThread] = []

    def start(**overrides: Any) -> str:
        overrides.setdefault("ACCOUNTS_FILE", str(accounts_file))
        servers.append(ServerThread(make_settings(redis_url, **overrides)).start())
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def service_url(start_service: Callable[..., str]) -> str:
    """The default service: mutation key set, reads open, accounts file configured."""
    return start_service()


@pytest.fixture
async def http(service_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the default service, without the API key."""
    async with httpx.AsyncClient(base_url=service_url, timeout=10) as client:
        yield client


@pytest.fixture
async def admin(service_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the default service, with the API key."""
    async with httpx.AsyncClient(
        base_url=service_url, timeout=10, headers={"X-API-Key": API_KEY}
    ) as client:
        yield client


async def add(queue: EventQueue, account: str = ACCOUNTS[0],
              command: ExecCommand = ExecCommand.REBALANCE) -> str:
    """Enqueue an event as the broker would; returns its id."""
    result = await queue.enqueue(NewEvent(account_id=account, exec_command=command))
    assert not result.duplicate
    return result.event_id


async def claim(queue: EventQueue, consumer: str = "worker-1") -> Event:
    """Claim the next event as a processor would."""
    event = await queue.claim(consumer, timeout=1)
    assert event is not None
    return event


async def requeue(queue: EventQueue, *, error: str = "IBKR unavailable after 4 attempts",
                  delay: float = 600) -> Event:
    """Claim the next event and fail it: times_queued becomes 2 and it waits ``delay`` s."""
    event = await claim(queue)
    await queue.fail(event, "worker-1", error, requeue_delay=delay)
    return event


# A rebalance's result as the processor stores it (issue 11's shape): the orders it placed and,
# per symbol, where the account should be, where it was and what was done.
REBALANCE_RESULT: dict[str, Any] = {
    "account_id": ACCOUNTS[0],
    "targets": {"source": "strategy balanced", "cash_reserve_percent": 2},
    "cancelled_orders": 0,
    "orders": [
        {"symbol": "AGG", "action": "SELL", "quantity": 30, "order_type": "MKT",
         "status": "Filled", "filled": 30, "avg_price": 98.49},
        {"symbol": "SPY", "action": "BUY", "quantity": 12, "order_type": "MKT",
         "status": "Filled", "filled": 12, "avg_price": 510.02},
    ],
    "symbols": [
        {"symbol": "SPY", "target_weight": 60, "price": 510.0, "bid": 509.98, "ask": 510.02,
         "target_shares": 117.6471, "current": 105, "ordered": 12, "filled": 12,
         "avg_price": 510.02, "reason": None},
        {"symbol": "AGG", "target_weight": 38, "price": 98.5, "bid": 98.49, "ask": 98.51,
         "target_shares": 385.7868, "current": 416, "ordered": -30, "filled": -30,
         "avg_price": 98.49, "reason": None},
        {"symbol": "GLD", "target_weight": 2, "price": 180.25, "bid": 180.2, "ask": 180.3,
         "target_shares": 11.0957, "current": 11, "ordered": 0, "filled": 0,
         "avg_price": None, "reason": "within the drift band: 1 share is worth less than the "
                                      "100 USD minimum order"},
    ],
}
