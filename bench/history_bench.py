"""The history stays fast at the largest retention: p50 of a 100-event page with the default
retention (5,000 records) vs the largest (100,000).

Run from the repository root: ``python bench/history_bench.py``. Self-contained: starts its own
Redis server (no AOF, for a fast fill), fills one database with 5,000 finished records and another
with 100,000 (through the upgrade path that turns an earlier version's history list into finished
records, a batch per script), then measures each query in interleaved rounds under the same machine
noise; every query fills its page in both. Targets: p50 ratio <= 2 (a page costs O(log n + what
it reads)). The worst case, two filters whose indexes are large and never meet: one script (the
longest Redis is busy for a page) under 10 ms, the whole page (its scripts read up to 20,000
index entries, then it stops and says where to go on) under 100 ms. Also prints the memory per
record. Exit 1 if a target is missed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "event-queue")]

from event_queue import (  # noqa: E402
    EventQueue,
    ExecCommand,
    HistoryQuery,
    Outcome,
    Retention,
)
from event_queue.redis_server import RedisServer  # noqa: E402

SMALL, LARGE = 5_000, 100_000
ACCOUNTS = 5
COMMANDS = [c.value for c in ExecCommand]
ROUNDS = 5
PER_ROUND = 40
RATIO_TARGET = 2.0
STALL_TARGET_MS = 10.0
SPARSE_PAGE_TARGET_MS = 100.0
RESULT = {"account_id": "", "orders": [{"symbol": "SPY", "action": "BUY", "quantity": 12,
                                        "status": "Filled", "filled": 12, "avg_price": 510.02}]}


def entry(i: int, now_ms: int, count: int) -> str:
    """A finished event as an earlier version's history list kept it: every account runs every
    command, except that the last one never rebalances; one in 50 was deleted."""
    account = f"DU{i % ACCOUNTS:07d}"
    command = COMMANDS[(i // ACCOUNTS) % 5]
    if i % ACCOUNTS == ACCOUNTS - 1 and command == "rebalance":
        command = "print-equity"
    finished = now_ms - (count - i) * 10
    return json.dumps({"event_id": f"bench-{i:07d}", "account_id": account,
                       "exec_command": command, "times_queued": 1, "created_at": finished - 900,
                       "finished_at": finished, "outcome": "deleted" if i % 50 == 0 else
                       "completed", "last_error": "", "result": {**RESULT, "account_id": account}})


async def fill(queue: EventQueue, count: int) -> tuple[int, float]:
    """``count`` finished records; returns the Redis time (ms) and the bytes per record."""
    before = (await queue.redis.info("memory"))["used_memory"]
    now_ms = int((await queue.stats()).redis_time.timestamp() * 1000)
    for start in range(0, count, 5000):
        pipe = queue.redis.pipeline(transaction=False)
        for i in range(start, min(count, start + 5000)):
            pipe.lpush(queue.keys.history, entry(i, now_ms, count))
        await pipe.execute()
    await queue.migrate_legacy_keys()
    after = (await queue.redis.info("memory"))["used_memory"]
    assert (await queue.stats()).finished_events == count
    return now_ms, (after - before) / count


def queries(now_ms: int) -> dict[str, Callable[[EventQueue], Awaitable[object]]]:
    middle = now_ms - 5 * 60_000

    def page(**fields: object) -> Callable[[EventQueue], Awaitable[object]]:
        async def run(queue: EventQueue) -> object:
            return await queue.history(HistoryQuery(limit=100, **fields))  # type: ignore[arg-type]
        return run

    async def older_page(queue: EventQueue) -> object:
        first = await queue.history(HistoryQuery(limit=100))
        return await queue.history(HistoryQuery(limit=100, before=first.older))

    async def one_event(queue: EventQueue) -> object:
        return await queue.lookup("bench-0000700")

    since = datetime.fromtimestamp(middle / 1000, tz=UTC)
    return {
        "newest 100": page(),
        "next page (cursor)": older_page,
        "account": page(account_id="DU0000002"),
        "account + command": page(account_id="DU0000002", exec_command=ExecCommand.REBALANCE),
        "command + outcome": page(exec_command=ExecCommand.REBALANCE,
                                  outcome=Outcome.COMPLETED),
        "deleted": page(outcome=Outcome.DELETED),
        "since 5 min ago": page(since=since),
        "one event by id": one_event,
    }


async def p50(queue: EventQueue, query: Callable[[EventQueue], Awaitable[object]]) -> float:
    times = []
    for _ in range(PER_ROUND):
        started = time.perf_counter()
        await query(queue)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def main() -> int:
    with RedisServer(appendfsync=None) as server:
        retention = Retention(max_events=LARGE, max_age_seconds=30 * 86400)
        base = server.url.rsplit("/", 1)[0]
        small = EventQueue.from_url(f"{base}/1", timeout=60, retention=retention)
        large = EventQueue.from_url(f"{base}/2", timeout=60, retention=retention)
        now_small, per_small = await fill(small, SMALL)
        now_large, per_large = await fill(large, LARGE)
        print(f"memory per record (a {len(json.dumps(RESULT)) + 15}-byte result): "
              f"{per_small:.0f} B at {SMALL:,}, {per_large:.0f} B at {LARGE:,}")
        results: dict[str, tuple[list[float], list[float]]] = {}
        for _ in range(ROUNDS):
            for name, query in queries(now_small).items():
                results.setdefault(name, ([], []))[0].append(await p50(small, query))
            for name, query in queries(now_large).items():
                results[name][1].append(await p50(large, query))
        sparse = HistoryQuery(limit=100, account_id=f"DU{ACCOUNTS - 1:07d}",
                              exec_command=ExecCommand.REBALANCE)
        sparse_ms = await p50(large, lambda q: q.history(sparse))
        large.history_scan_calls = 1
        stall_ms = await p50(large, lambda q: q.history(sparse))
        await small.close()
        await large.close()
    ok = True
    print(f"{'query':<22} {SMALL:>9,} {LARGE:>9,}  ratio")
    for name, (low, high) in results.items():
        a, b = statistics.median(low), statistics.median(high)
        ratio = b / a
        ok &= ratio <= RATIO_TARGET
        print(f"{name:<22} {a:>7.2f}ms {b:>7.2f}ms  {ratio:.2f}"
              f"{'' if ratio <= RATIO_TARGET else '  MISSED'}")
    for name, value, target in (("no match: one script", stall_ms, STALL_TARGET_MS),
                                ("no match: the page", sparse_ms, SPARSE_PAGE_TARGET_MS)):
        ok &= value <= target
        print(f"{name:<22} {'':>9} {value:>7.2f}ms  (target <= {target:g} ms)"
              f"{'' if value <= target else '  MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
