"""Benchmark of the event processor: no-op throughput and enqueue → command-start latency.

Run from the repository root: ``python bench/processor_bench.py``. It starts its own Redis (AOF
``appendfsync always``, as production runs it) and real ``python -m event_processor`` processes
whose commands are the test doubles (no-op: no sleep, no recording). Targets: ≥ 1,000 events/s at
concurrency 8; p99 enqueue → command start ≤ 5 ms with an idle processor.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "event-queue"), str(ROOT / "event-processor"), str(ROOT)]

import redis.asyncio as aioredis  # noqa: E402

from event_queue import EventQueue, ExecCommand, NewEvent  # noqa: E402
from event_queue.connections import AnyRedis  # noqa: E402
from event_queue.redis_server import RedisServer  # noqa: E402
from tests.processor.harness import ProcessorProcess, read_records, write_config  # noqa: E402

COMMANDS = list(ExecCommand)
# Top-level commands the processor sends (none of these is called from inside a script here).
PROCESSOR_COMMANDS = ("blmove", "evalsha", "set")
# The shipped config's timings (the test harness defaults are much shorter).
PRODUCTION_TIMING = {"concurrency": 8, "claim_timeout": 1.0, "lease_seconds": 30,
                     "lock_poll_interval": 0.1, "reap_interval": 10, "promote_interval": 1,
                     "heartbeat_interval": 5}


async def command_calls(client: AnyRedis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
            for name in PROCESSOR_COMMANDS}


async def wait_ready(queue: EventQueue, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(await queue.alive_processors(within=10)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("processor did not start")
        await asyncio.sleep(0.05)


def no_op_events(count: int, offset: int) -> list[tuple[NewEvent, str | None]]:
    """Distinct accounts, so no event waits for another's account lock."""
    return [(NewEvent(account_id=f"B{offset + i}", exec_command=COMMANDS[i % 6],
                      data={"record": False}), None) for i in range(count)]


async def throughput(server: RedisServer, work: Path, concurrency: int, count: int) -> dict[str, Any]:
    queue = EventQueue.from_url(server.url)
    client = queue.redis
    await client.flushall()
    config = write_config(work, server.url, **{**PRODUCTION_TIMING, "concurrency": concurrency})
    process = ProcessorProcess(config, work / "unused.jsonl", work / f"log-c{concurrency}.jsonl")
    process.start()
    try:
        await wait_ready(queue, 1)
        before = await command_calls(client)
        started = time.perf_counter()
        for offset in range(0, count, 1000):
            await queue.enqueue_many(no_op_events(min(1000, count - offset), offset))
        while await client.zcard(queue.keys.events_all):
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        after = await command_calls(client)
    finally:
        process.terminate()
        process.wait(30)
        await queue.close()
    enqueue_scripts = -(-count // 1000)  # the bench's own EVALSHA calls
    sent = sum(after[c] - before[c] for c in PROCESSOR_COMMANDS) - enqueue_scripts
    return {"concurrency": concurrency, "events": count, "seconds": elapsed,
            "per_second": count / elapsed, "redis_calls_per_event": sent / count}


async def latency(server: RedisServer, work: Path, samples: int) -> dict[str, Any]:
    queue = EventQueue.from_url(server.url)
    await queue.redis.flushall()
    record = work / "latency.jsonl"
    config = write_config(work, server.url, **PRODUCTION_TIMING)
    process = ProcessorProcess(config, record, work / "log-latency.jsonl").start()
    enqueued: dict[str, float] = {}
    try:
        await wait_ready(queue, 1)
        for i in range(samples):
            sent = time.time()
            result = await queue.enqueue(NewEvent(account_id=f"L{i}",
                                                  exec_command=ExecCommand.PRINT_EQUITY))
            enqueued[result.event_id] = sent
            await asyncio.sleep(0.02)  # let the processor go idle again
        await asyncio.sleep(0.5)
    finally:
        process.terminate()
        process.wait(30)
        await queue.close()
    starts = {r["event_id"]: r["t"] for r in read_records(record) if r["what"] == "start"}
    waits = sorted((starts[i] - t) * 1000 for i, t in enqueued.items() if i in starts)
    return {"samples": len(waits), "p50_ms": statistics.median(waits),
            "p99_ms": waits[int(len(waits) * 0.99) - 1], "max_ms": waits[-1]}


async def write_latency(server: RedisServer, samples: int = 300) -> dict[str, Any]:
    """Baseline: one acknowledged write (SET), 20 ms apart like the latency samples, in ms."""
    client = aioredis.Redis.from_url(server.url)
    waits = []
    try:
        for i in range(samples):
            started = time.perf_counter()
            await client.set("bench:write", i)
            waits.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    waits.sort()
    return {"p50_ms": statistics.median(waits), "p99_ms": waits[int(samples * 0.99) - 1]}


async def run_mode(fsync: str, count: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="processor-bench-") as tmp, \
            RedisServer(appendfsync=fsync) as server:
        work = Path(tmp)
        write = await write_latency(server)
        one = await throughput(server, work, 1, count)
        eight = await throughput(server, work, 8, count)
        lat = await latency(server, work, samples)
    return {"fsync": fsync, "version": server.binary.version, "write": write, "one": one,
            "eight": eight, "latency": lat}


def report(mode: dict[str, Any]) -> None:
    write, one, eight, lat = mode["write"], mode["one"], mode["eight"], mode["latency"]
    print(f"\n== redis {mode['version']}, appendfsync {mode['fsync']} ==")
    print(f"baseline: one acknowledged SET, 20 ms apart: p50 {write['p50_ms']:.2f} ms, "
          f"p99 {write['p99_ms']:.2f} ms")
    for row in (one, eight):
        print(f"no-op throughput, concurrency {row['concurrency']}: "
              f"{row['per_second']:,.0f} events/s ({row['events']} events in "
              f"{row['seconds']:.2f} s; {row['redis_calls_per_event']:.2f} Redis calls/event)")
    print(f"  ratio concurrency 8 / 1: {eight['per_second'] / one['per_second']:.2f}x; "
          f"target >= 1,000 events/s at 8: {'met' if eight['per_second'] >= 1000 else 'NOT met'}")
    print(f"enqueue -> command start, idle processor ({lat['samples']} samples): "
          f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms; "
          f"target p99 <= 5 ms: {'met' if lat['p99_ms'] <= 5 else 'NOT met'}")
    print(f"  ratio latency / one write: p50 {lat['p50_ms'] / write['p50_ms']:.1f}, "
          f"p99 {lat['p99_ms'] / write['p99_ms']:.1f} (the path is 4 acknowledged writes: "
          "enqueue, BLMOVE, lease, account lock)")


async def main(count: int, samples: int, modes: list[str]) -> None:
    for fsync in modes:
        report(await run_mode(fsync, count, samples))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--fsync", nargs="+", default=["always", "everysec"],
                        help="AOF modes to measure: always is production; everysec shows the "
                             "processor's own cost without waiting for the disk")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.samples, args.fsync))
