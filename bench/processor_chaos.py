"""Long chaos run of the event processor: 3 processes, 50 SIGKILLs at random moments, restarts.

Run from the repository root: ``python bench/processor_chaos.py [--kills 50] [--accounts 150]``.
It starts its own Redis (AOF ``appendfsync always``), enqueues six commands per account whose test
double sleeps a random time (10% fail once), kills a random processor every 0.2-0.8 s and starts a
new one, then checks that every event completed, none was lost, the queue invariants hold, and the
runs a kill interrupted ran again with a higher ``times_queued`` and no event was claimed twice at
one ``times_queued``. Prints the counts; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "event-queue"), str(ROOT / "event-processor"), str(ROOT)]

from event_queue import (  # noqa: E402
    EventQueue,
    ExecCommand,
    HistoryQuery,
    NewEvent,
    Outcome,
    Retention,
)
from event_queue.invariants import violations  # noqa: E402
from event_queue.redis_server import RedisServer  # noqa: E402
from tests.processor.harness import (  # noqa: E402
    ProcessorProcess,
    claimed_twice,
    interrupted_claims,
    not_run_again,
    read_records,
    runs_by_event,
    write_config,
)

OPTIONS = {"concurrency": 3, "lease_seconds": 1.0}


def spawn(work: Path, url: str, record: Path, index: int) -> ProcessorProcess:
    config = write_config(work, url, **OPTIONS)
    return ProcessorProcess(config, record, work / f"log-{index}.jsonl",
                            env={"HISTORY_MAX_EVENTS": "100000"}).start()  # keep every result


async def completed(queue: EventQueue) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    query = HistoryQuery(outcome=Outcome.COMPLETED, limit=1000)
    while True:
        page = await queue.history(query)
        found.update((e.event_id, e.model_dump()) for e in page.entries)
        if page.older is None:
            return found
        query = HistoryQuery(outcome=Outcome.COMPLETED, limit=1000, before=page.older)


async def run(kills: int, accounts: int, seed: int) -> bool:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="processor-chaos-") as tmp, \
            RedisServer(appendfsync="always") as server:
        work, record = Path(tmp), Path(tmp) / "runs.jsonl"
        queue = EventQueue.from_url(server.url, retention=Retention(max_events=100_000))
        spawned = 0
        processes = []
        for _ in range(3):
            processes.append(spawn(work, server.url, record, spawned))
            spawned += 1
        batch = [(NewEvent(account_id=f"C{a}", exec_command=c,
                           data={"sleep": [0.02, 0.4], "fail_until": int(rng.random() < 0.1)}),
                  None) for a in range(accounts) for c in ExecCommand]
        started = time.monotonic()
        ids = {r.event_id for r in await queue.enqueue_many(batch)}
        killed_pids: set[int] = set()
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.2, 0.8))
            victim = rng.randrange(len(processes))
            killed_pids.add(processes[victim].pid)
            processes[victim].kill()
            processes[victim] = spawn(work, server.url, record, spawned)
            spawned += 1
        killing_done = time.monotonic() - started
        deadline = time.monotonic() + 180
        while not ids <= set(await completed(queue)) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        for process in processes:
            process.terminate()
        exit_codes = [process.wait(30) for process in processes]
        history = await completed(queue)
        problems = await violations(queue.redis)
        stats = await queue.stats()
        await queue.close()
        records = read_records(record)
    return report(ids, history, records, killed_pids, exit_codes, problems,
                  stats.total_events, kills, killing_done, elapsed)


def report(
    ids: set[str],
    history: dict[str, dict[str, Any]],
    records: list[dict[str, Any]],
    killed_pids: set[int],
    exit_codes: list[int],
    problems: list[str],
    live: int,
    kills: int,
    killing_done: float,
    elapsed: float,
) -> bool:
    runs = runs_by_event(records)
    done = ids & set(history)
    interrupted = interrupted_claims(runs, killed_pids)
    missed = not_run_again(runs, interrupted, {i: e["times_queued"] for i, e in history.items()})
    twice = claimed_twice(runs)
    starts = Counter(r["event_id"] for r in records if r["what"] == "start")
    times = Counter(e["times_queued"] for e in history.values())
    checks = {
        "every event completed": done == ids,
        "none lost (no live event left)": live == 0,
        "queue invariants hold (no orphaned dedup key)": not problems,
        "interrupted runs ran again with a higher times_queued": not missed,
        "no event claimed twice at one times_queued": not twice,
        "survivors exited 0 on SIGTERM": set(exit_codes) == {0},
    }
    print(f"events {len(ids)}, SIGKILLs {kills} (over {killing_done:.1f} s), "
          f"all done after {elapsed:.1f} s")
    print(f"completed {len(done)}, lost {len(ids - done)}, live left {live}")
    print(f"command runs {sum(starts.values())} ({sum(starts.values()) / len(ids):.2f} per event), "
          f"events run more than once {sum(1 for n in starts.values() if n > 1)}")
    print(f"runs interrupted by a kill {len(interrupted)}, ran again with a higher times_queued "
          f"{len(interrupted - missed)}")
    print("final times_queued distribution: " + ", ".join(
        f"{k}: {v}" for k, v in sorted(times.items())))
    for problem in problems[:10]:
        print(f"  invariant: {problem}")
    for name, ok in checks.items():
        print(f"[{'ok' if ok else 'FAILED'}] {name}")
    return all(checks.values())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(run(args.kills, args.accounts, args.seed)) else 1)
