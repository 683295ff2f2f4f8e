"""event_queue benchmark: enqueue rate against RQ and arq, and stats latency as the queue grows.

Run from the repository root: `python bench/queue_bench.py` (or `bench/run queue`). Everything is
measured in this one run against private Redis servers: one with AOF `appendfsync always`, as
production runs it (where a sequential client waits for an fsync per write, whoever it is), and one
without AOF, which shows the client-side cost. Ratios from one run mean something on a shared, noisy
machine; absolute figures do not.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import redis.asyncio as aioredis
from arq.connections import RedisSettings, create_pool
from rq import Queue

from bench.common import latencies, p50, table
from event_queue import EventQueue, ExecCommand, NewEvent
from event_queue.redis_server import RedisServer

EVENTS = 20_000
IN_FLIGHT = 64
COMMANDS = list(ExecCommand)


def events(n: int, prefix: str) -> list[NewEvent]:
    return [
        NewEvent(account_id=f"{prefix}{i // len(COMMANDS)}", exec_command=COMMANDS[i % len(COMMANDS)],
                 data={"strategy": "balanced"})
        for i in range(n)
    ]


async def flush(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    await client.aclose()


def rate(n: int, seconds: float) -> float:
    return n / seconds


async def ours_sequential(url: str) -> float:
    q = EventQueue.from_url(url)
    batch = events(EVENTS, "SEQ")
    started = time.perf_counter()
    for event in batch:
        await q.enqueue(event)
    elapsed = time.perf_counter() - started
    await q.close()
    return rate(EVENTS, elapsed)


async def ours_concurrent(url: str) -> float:
    q = EventQueue.from_url(url, max_connections=IN_FLIGHT)
    batch = events(EVENTS, "CON")
    started = time.perf_counter()
    for i in range(0, EVENTS, IN_FLIGHT):
        await asyncio.gather(*(q.enqueue(e) for e in batch[i:i + IN_FLIGHT]))
    elapsed = time.perf_counter() - started
    await q.close()
    return rate(EVENTS, elapsed)


async def ours_batched(url: str) -> float:
    q = EventQueue.from_url(url)
    batch = events(EVENTS, "BAT")
    started = time.perf_counter()
    for i in range(0, EVENTS, IN_FLIGHT):
        await q.enqueue_many([(e, None) for e in batch[i:i + IN_FLIGHT]])
    elapsed = time.perf_counter() - started
    await q.close()
    return rate(EVENTS, elapsed)


def rq_sequential(url: str) -> float:
    queue = Queue("bench", connection=redis.Redis.from_url(url))
    started = time.perf_counter()
    for i in range(EVENTS):
        queue.enqueue("os.getpid", i)  # never run; a name RQ can import
    return rate(EVENTS, time.perf_counter() - started)


async def arq_run(url: str, *, in_flight: int) -> float:
    pool = await create_pool(RedisSettings.from_dsn(url))
    started = time.perf_counter()
    for i in range(0, EVENTS, in_flight):
        await asyncio.gather(*(pool.enqueue_job("noop", j) for j in range(i, i + in_flight)))
    elapsed = time.perf_counter() - started
    await pool.aclose()
    return rate(EVENTS, elapsed)


async def fill(url: str, n: int) -> None:
    q = EventQueue.from_url(url)
    batch = events(n, "FILL")
    for i in range(0, n, 500):
        await q.enqueue_many([(e, None) for e in batch[i:i + 500]])
    await q.close()


async def stats_p50(url: str) -> float:
    q = EventQueue.from_url(url)
    samples = await latencies(q.stats, repeat=300)
    await q.close()
    return p50(samples)


async def enqueue_rates(url: str) -> list[tuple[str, ...]]:
    results: dict[str, float] = {}
    runs: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("rq Queue.enqueue, sequential", lambda: asyncio.to_thread(rq_sequential, url)),
        ("event_queue enqueue, sequential", lambda: ours_sequential(url)),
        ("arq enqueue_job, sequential", lambda: arq_run(url, in_flight=1)),
        (f"arq enqueue_job, {IN_FLIGHT} in flight", lambda: arq_run(url, in_flight=IN_FLIGHT)),
        (f"event_queue enqueue, {IN_FLIGHT} in flight", lambda: ours_concurrent(url)),
        (f"event_queue enqueue_many, batches of {IN_FLIGHT}", lambda: ours_batched(url)),
    ]
    for name, run in runs:
        await flush(url)
        results[name] = await run()
    base = results["rq Queue.enqueue, sequential"]
    rows: list[tuple[str, ...]] = [("what", "events/s", "x RQ")]
    rows += [(k, f"{v:,.0f}", f"{v / base:.2f}") for k, v in results.items()]
    return rows


async def stats_scaling(url: str) -> list[tuple[str, ...]]:
    await flush(url)
    await fill(url, 10)
    small = await stats_p50(url)
    await flush(url)
    await fill(url, 100_000)
    large = await stats_p50(url)
    return [
        ("queued events", "stats() p50"),
        ("10", f"{small * 1e3:.3f} ms"),
        ("100,000", f"{large * 1e3:.3f} ms"),
        ("ratio (target <= 1.5)", f"{large / small:.2f}"),
    ]


async def main() -> None:
    print(f"{EVENTS:,} events per run; every figure below comes from this one run")
    for appendfsync in ("always", None):
        with RedisServer(appendfsync=appendfsync) as server:
            setting = f"AOF appendfsync {appendfsync}" if appendfsync else "no AOF (client cost)"
            table(f"enqueue rate, Redis {server.binary.version}, {setting} (target: >= 2x RQ)",
                  await enqueue_rates(server.url))
    with RedisServer(appendfsync="always") as server:
        table("stats latency as the queue grows", await stats_scaling(server.url))


if __name__ == "__main__":
    asyncio.run(main())
