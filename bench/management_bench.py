"""Management-service latency does not grow with the queue: p50 at 10/100 vs 100,000 events.

Run from the repository root: ``python bench/management_bench.py``. Self-contained: starts its own
Redis server (no AOF, for a fast fill) and three copies of the service under uvicorn (uvloop +
httptools), one per Redis database, so the small and the large queue are measured in interleaved
rounds under the same machine noise. Targets: ``/health`` and ``/queue/status`` p50 ratio <= 1.5
(10 vs 100,000 events), ``/queue/events?limit=100`` <= 2 (100 vs 100,000). Exit 1 if one is missed.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "event-queue"), str(ROOT / "management-service")]

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from event_queue import EventQueue, ExecCommand, NewEvent  # noqa: E402
from event_queue.redis_server import RedisServer, free_port  # noqa: E402
from management_service.app import create_app  # noqa: E402
from management_service.config import Settings  # noqa: E402

LARGE = 100_000
BATCH = 1000
ROUNDS = 6
PER_ROUND = 60
REQUEUED = 3  # a few events with times_queued > 1 in every database: /health shows them
TARGETS = {"/health": (10, 1.5), "/queue/status": (10, 1.5), "/queue/events?limit=100": (100, 2.0)}


async def fill(url: str, count: int) -> None:
    """Enqueue ``count`` events (distinct accounts), requeue a few, and send a heartbeat."""
    queue = EventQueue.from_url(url, timeout=30)
    try:
        for start in range(0, count, BATCH):
            batch = [(NewEvent(account_id=f"B{i:07d}", exec_command=ExecCommand.REBALANCE), None)
                     for i in range(start, min(count, start + BATCH))]
            await queue.enqueue_many(batch)
        for _ in range(REQUEUED):
            event = await queue.claim("bench-worker", timeout=1)
            assert event is not None
            await queue.fail(event, "bench-worker", "bench: simulated failure",
                             requeue_delay=3600)
        await queue.heartbeat("bench-worker")
    finally:
        await queue.close()


def serve(redis_url: str) -> tuple[uvicorn.Server, str]:
    """The service on a free port in a background thread."""
    settings = Settings.model_validate({"redis_connection": redis_url,
                                        "health": {"processor_window_seconds": 3600}})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
        ws="none", log_config=None, access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}"


def timings(client: httpx.Client, path: str, count: int) -> list[float]:
    """Wall-clock seconds of ``count`` sequential keep-alive requests."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        out.append(time.perf_counter() - started)
        assert response.status_code in (200, 503), (path, response.status_code)
    return out


def measure(urls: dict[int, str]) -> dict[tuple[str, int], float]:
    """p50 (ms) per (path, queue size), small and large interleaved round by round."""
    samples: dict[tuple[str, int], list[float]] = {}
    clients = {size: httpx.Client(base_url=url, timeout=30) for size, url in urls.items()}
    try:
        for path, (small, _) in TARGETS.items():
            for size in (small, LARGE):
                timings(clients[size], path, 20)  # warm up
        for _ in range(ROUNDS):
            for path, (small, _) in TARGETS.items():
                for size in (small, LARGE):
                    samples.setdefault((path, size), []).extend(
                        timings(clients[size], path, PER_ROUND))
    finally:
        for client in clients.values():
            client.close()
    return {key: statistics.median(values) * 1000 for key, values in samples.items()}


def report(p50: dict[tuple[str, int], float]) -> bool:
    """Print the table; True when every target is met."""
    ok = True
    print(f"{'endpoint':28} {'small':>7} {'p50 ms':>8} {'100k p50 ms':>12} {'ratio':>6}  target")
    for path, (small, target) in TARGETS.items():
        ratio = p50[(path, LARGE)] / p50[(path, small)]
        met = ratio <= target
        ok &= met
        print(f"{path:28} {small:>7} {p50[(path, small)]:>8.2f} {p50[(path, LARGE)]:>12.2f} "
              f"{ratio:>6.2f}  <= {target} {'ok' if met else 'MISSED'}")
    return ok


def main() -> int:
    with RedisServer(appendfsync=None) as redis:
        sizes = {10: 0, 100: 1, LARGE: 2}
        urls = {size: f"{redis.url[:-2]}/{db}" for size, db in sizes.items()}
        started = time.perf_counter()
        for size, url in urls.items():
            asyncio.run(fill(url, size))
        print(f"filled 10 / 100 / {LARGE:,} events in {time.perf_counter() - started:.1f} s")
        servers = {size: serve(url) for size, url in urls.items()}
        try:
            ok = report(measure({size: base for size, (_, base) in servers.items()}))
        finally:
            for server, _ in servers.values():
                server.should_exit = True
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
