"""``python -m event_processor healthcheck``: the processor container's HEALTHCHECK."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from event_queue.redis_server import free_port
from tests.processor.conftest import StartProcessor
from tests.processor.harness import PYTHONPATH, ROOT


async def healthcheck(redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "REDIS_URL": redis_url,
           "PROCESSOR_PROCESSING__HEARTBEAT_INTERVAL": "0.2"}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "event_processor", "healthcheck"], cwd=ROOT,
        env=env, capture_output=True, text=True, timeout=30, check=False)


async def test_healthy_only_while_this_hosts_processor_sends_heartbeats(
    redis_url: str, start_processor: StartProcessor
) -> None:
    before = await healthcheck(redis_url)
    assert before.returncode == 1
    assert before.stdout.startswith("unhealthy: no heartbeat from a processor on ")

    processor = await start_processor({}, heartbeat_interval=0.2)
    await asyncio.sleep(0.3)
    running = await healthcheck(redis_url)
    assert running.returncode == 0, running.stdout + running.stderr
    assert running.stdout.startswith(f"healthy: {processor.consumer_id} running, heartbeat ")

    processor.request_stop("test")
    await asyncio.sleep(1.0)  # a stopped processor removes its heartbeat
    after = await healthcheck(redis_url)
    assert after.returncode == 1


async def test_unhealthy_when_redis_is_unreachable() -> None:
    done = await healthcheck(f"redis://127.0.0.1:{free_port()}/0")
    assert done.returncode == 1
    assert done.stdout.startswith("unhealthy: queue unavailable")
