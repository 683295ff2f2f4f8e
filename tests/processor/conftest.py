"""Fixtures for the processor: in-process processors with test commands, and real processes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from event_processor.commands.base import Registry
from event_processor.config import Settings
from event_processor.core.event_processor import EventProcessor
from tests.processor.harness import (
    REQUIRE_EARLY_PYTHON_ENV,
    ProcessorProcess,
    early_python,
    python_version,
    write_config,
)

StartProcessor = Callable[..., Awaitable[EventProcessor]]
SpawnProcessor = Callable[..., ProcessorProcess]


def fast_settings(redis_url: str, *, ibkr: dict[str, Any] | None = None,
                  history: dict[str, Any] | None = None, **processing: Any) -> Settings:
    """Settings with short leases and intervals, for in-process processors."""
    fast = {"concurrency": 2, "requeue_delay": 0.2, "lease_seconds": 1.0, "claim_timeout": 0.2,
            "lock_poll_interval": 0.02, "reap_interval": 0.2, "promote_interval": 0.05,
            "heartbeat_interval": 0.2, "shutdown_grace": 1.0}
    return Settings(redis={"url": redis_url, "timeout": 1.0, "reconnect_delay": 0.1},
                    processing={**fast, **processing}, ibkr=ibkr or {}, history=history or {})


@pytest.fixture
async def start_processor(redis_url: str) -> AsyncIterator[StartProcessor]:
    """Start processors in this event loop; each is stopped and closed after the test."""
    running: list[tuple[EventProcessor, asyncio.Task[None]]] = []

    async def start(registry: Registry, *, ibkr: dict[str, Any] | None = None,
                    history: dict[str, Any] | None = None, **processing: Any) -> EventProcessor:
        settings = fast_settings(redis_url, ibkr=ibkr, history=history, **processing)
        processor = EventProcessor.from_settings(settings, registry)
        running.append((processor, asyncio.create_task(processor.run())))
        return processor

    yield start
    for processor, task in running:
        processor.request_stop("test over")
        try:
            await asyncio.wait_for(task, 20)
        finally:
            await processor.close()


@pytest.fixture
def spawn_processor(tmp_path: Path) -> Iterator[SpawnProcessor]:
    """Start ``python -m event_processor`` processes; any still alive are killed afterwards."""
    spawned: list[ProcessorProcess] = []

    def spawn(redis_url: str, *, record_file: Path, python: str = sys.executable,
              **processing: Any) -> ProcessorProcess:
        config = write_config(tmp_path, redis_url, **processing)
        process = ProcessorProcess(config, record_file, tmp_path / f"log-{len(spawned)}.jsonl",
                                   python=python)
        spawned.append(process.start())
        return process

    yield spawn
    for process in spawned:
        process.kill()


@pytest.fixture(params=["this-python", "cpython-3.11.0-3.11.2"])
def processor_python(request: pytest.FixtureRequest) -> str:
    """The interpreter a processor process runs on: this one, and an early 3.11 release.

    CPython 3.11.0-3.11.2 (Debian 12's python3) cancel an expiring ``asyncio.timeout`` inside a
    task with a pending cancellation, which broke the SIGTERM hand-back there.
    """
    if request.param == "this-python":
        return sys.executable
    python = early_python()
    if python is None:
        reason = ("no CPython 3.11.0-3.11.2 interpreter (EARLY_PYTHON); scripts/check makes one "
                  "from /usr/bin/python3.11 when that is Debian 12's 3.11.2")
        if os.environ.get(REQUIRE_EARLY_PYTHON_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    assert (3, 11, 0) <= python_version(python) <= (3, 11, 2), f"{python} is not 3.11.0-3.11.2"
    return python
