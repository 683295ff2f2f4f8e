"""Consistency checks of the whole queue state; they scan, so they are for tests and diagnosis only.

The central invariant: each dedup key in ``active_events`` belongs to exactly one live event, and each
live event's key is present. The other checks keep the areas and indexes exact.
"""

from __future__ import annotations

from collections import Counter

from event_queue.connections import AnyRedis, scan_keys
from event_queue.keys import DEFAULT, Keys


async def violations(redis: AnyRedis, k: Keys = DEFAULT) -> list[str]:
    """Every way the stored state breaks the contract (empty when consistent)."""
    events = await _live_events(redis, k)
    active = set(await redis.smembers(k.active_events))  # type: ignore[misc]
    index = await redis.hgetall(k.dedup_index)  # type: ignore[misc]
    problems = _check_dedup(events, active, index)
    problems += await _check_areas(redis, events, k)
    problems += await _check_indexes(redis, events, k)
    problems += await _check_finished(redis, events, k)
    return problems


async def assert_consistent(redis: AnyRedis, k: Keys = DEFAULT) -> None:
    """Raise AssertionError listing every violation."""
    problems = await violations(redis, k)
    assert not problems, "queue invariants violated:\n" + "\n".join(problems)


async def _live_events(redis: AnyRedis, k: Keys) -> dict[str, dict[str, str]]:
    events: dict[str, dict[str, str]] = {}
    async for key in scan_keys(redis, k.event_pattern(), near=k.queue):
        events[k.event_id_of(key)] = await redis.hgetall(key)  # type: ignore[misc]
    return events


def _check_dedup(
    events: dict[str, dict[str, str]], active: set[str], index: dict[str, str]
) -> list[str]:
    problems = []
    if active != set(index):
        problems.append(f"active_events and dedup index differ: {sorted(active ^ set(index))}")
    owners = Counter(e.get("dedup_key", "") for e in events.values())
    for key, event_id in index.items():
        record = events.get(event_id)
        if record is None:
            problems.append(f"dedup key {key} points at missing event {event_id}")
        elif record.get("dedup_key") != key:
            problems.append(f"dedup key {key} points at {event_id} whose key is different")
    for key, count in owners.items():
        if count > 1:
            problems.append(f"dedup key {key} belongs to {count} live events")
    for event_id, record in events.items():
        key = record.get("dedup_key", "")
        if key not in active or index.get(key) != event_id:
            problems.append(f"live event {event_id} has no active dedup key {key!r}")
    return problems


async def _check_areas(
    redis: AnyRedis, events: dict[str, dict[str, str]], k: Keys
) -> list[str]:
    queued = await redis.lrange(k.queue, 0, -1)  # type: ignore[misc]
    processing = await redis.lrange(k.processing, 0, -1)  # type: ignore[misc]
    retry = await redis.zrange(k.retry_wait, 0, -1)
    placed = Counter([*queued, *processing, *retry])
    problems = [f"event {i} is placed {n} times" for i, n in placed.items() if n > 1]
    problems += [f"area holds unknown event {i}" for i in placed if i not in events]
    expected = {"queued": set(queued), "retry_wait": set(retry), "processing": set(processing)}
    for event_id, record in events.items():
        state = record.get("state", "")
        if event_id not in placed:
            problems.append(f"event {event_id} ({state}) is in no area: lost")
        elif event_id not in expected.get(state, set()) and not (
            state == "queued" and event_id in expected["processing"]  # claimed, lease pending
        ):
            problems.append(f"event {event_id} has state {state} but sits elsewhere")
    return problems


async def _check_indexes(
    redis: AnyRedis, events: dict[str, dict[str, str]], k: Keys
) -> list[str]:
    problems = []
    requeued = dict(await redis.zrange(k.requeued, 0, -1, withscores=True))
    want_requeued = {
        i: float(times) for i, r in events.items() if (times := _times(r)) > 1
    }
    if requeued != want_requeued:
        problems.append(f"requeued index {requeued} != events with times_queued > 1 "
                        f"{want_requeued}")
    if set(await redis.zrange(k.events_all, 0, -1)) != set(events):
        problems.append("events:all index differs from the live events")
    for event_id, record in events.items():
        account, command = record.get("account_id", ""), record.get("exec_command", "")
        if await redis.zscore(k.by_account(account), event_id) is None:
            problems.append(f"event {event_id} missing from its account index")
        if await redis.zscore(k.by_command(command), event_id) is None:
            problems.append(f"event {event_id} missing from its command index")
    leases = set(await redis.zrange(k.leases, 0, -1))
    processing = set(await redis.lrange(k.processing, 0, -1))  # type: ignore[misc]
    problems += [f"lease for {i} which is not processing" for i in leases - processing]
    return problems


async def _check_finished(
    redis: AnyRedis, events: dict[str, dict[str, str]], k: Keys
) -> list[str]:
    """Every finished record is listed once in each of its indexes, and nothing else is."""
    records = await redis.hgetall(k.finished)  # type: ignore[misc]
    members = await redis.zrange(k.finished_index, 0, -1)
    problems = [f"event {i} is both live and finished" for i in set(records) & set(events)]
    listed = Counter(m.rsplit("\t", 1)[-1] for m in members if m.startswith("t:"))
    for event_id in records:
        if listed[event_id] != 1:
            problems.append(f"finished event {event_id} is listed {listed[event_id]} times")
    want = set()
    for member in members:
        if member.startswith("t:"):
            suffix = member[2:]
            _, account, command, outcome, _ = suffix.split("\t", 4)
            want |= {member, f"a:{account}:{suffix}", f"c:{command}:{suffix}"}
            if outcome == "deleted":
                want.add(f"o:deleted:{suffix}")
    if set(members) != want:
        problems.append(f"finished index members without their siblings: "
                        f"{sorted(set(members) ^ want)[:5]}")
    problems += [f"finished index lists unknown event {i}" for i in listed if i not in records]
    return problems


def _times(record: dict[str, str]) -> int:
    try:
        return int(record.get("times_queued", 1))
    except ValueError:
        return 1  # malformed: the scripts count it as 1
