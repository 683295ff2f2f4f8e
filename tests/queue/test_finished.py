"""Finished events on a real Redis: each keeps its record and timeline for the retention (count
and age), the history filters and pages exactly like a plain reference filter, its read budget
bounds each page, and the history list of earlier versions becomes finished records."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta

import pytest
from redis.exceptions import ResponseError

from event_queue import (
    Event,
    EventFinished,
    EventNotWaiting,
    EventQueue,
    ExecCommand,
    FinishedEvent,
    HistoryQuery,
    InvalidCursor,
    NewEvent,
    Outcome,
    Retention,
    keys,
)
from event_queue.events import datetime_to_ms
from event_queue.timeline import Step
from tests.queue.test_hardening import everything


async def add(queue: EventQueue, account: str = "DU1",
              command: ExecCommand = ExecCommand.REBALANCE, **data: object) -> str:
    result = await queue.enqueue(NewEvent(account_id=account, exec_command=command, data=data))
    assert not result.duplicate
    return result.event_id


async def claim(queue: EventQueue, consumer: str) -> Event:
    event = await queue.claim(consumer, timeout=1)
    assert event is not None
    return event


async def finished(queue: EventQueue, event_id: str) -> FinishedEvent:
    record = await queue.lookup(event_id)
    assert isinstance(record, FinishedEvent), record
    return record


def shape(timeline: list[Step]) -> list[tuple[object, ...]]:
    return [(s.step, s.attempt, s.consumer, s.outcome, s.error, s.by) for s in timeline]


async def test_a_completed_event_keeps_its_record_with_every_attempt_in_order(
    queue: EventQueue,
) -> None:
    event_id = await add(queue, strategy="balanced", allocations=[])
    fresh = await queue.redis.hgetall(keys.event(event_id))
    assert not {"steps", "attempts", "added_by", "steps_dropped"} & set(fresh)  # queued: lean

    first = await claim(queue, "proc-a")
    await queue.fail(first, "proc-a", "IBKRUnavailable: gateway down", requeue_delay=0)
    assert await queue.promote_due_retries() == 1
    second = await claim(queue, "proc-b")
    await queue.release(second, "proc-b")
    third = await claim(queue, "proc-c")
    running = (await queue.lookup(event_id)).timeline()
    assert shape(running)[-1] == ("attempt", 3, "proc-c", "running", None, None)
    assert await queue.complete(third, "proc-c", {"orders": [], "positions": {}}) == "completed"

    record = await finished(queue, event_id)
    assert (record.outcome, record.finished_by, record.times_queued, record.attempts) == (
        Outcome.COMPLETED, "proc-c", 2, 3)
    assert record.result == {"orders": [], "positions": {}}  # [] stays a list
    assert record.data == {"strategy": "balanced", "allocations": []}
    timeline = record.timeline()
    assert shape(timeline) == [
        ("received", None, None, None, None, None),
        ("queued", None, None, None, None, None),
        ("attempt", 1, "proc-a", "failed", "IBKRUnavailable: gateway down", None),
        ("attempt", 2, "proc-b", "handed_back", None, None),
        ("attempt", 3, "proc-c", "completed", None, None),
        ("completed", None, None, None, None, "proc-c"),
    ]
    assert timeline[0].at == timeline[1].at == record.created_at
    assert timeline[2].next_attempt_at is not None and timeline[2].duration_ms is not None
    assert timeline[-1].at == record.finished_at
    times = [s.at for s in timeline]
    assert all(t is not None for t in times) and times == sorted(times)  # type: ignore[type-var]
    assert await queue.redis.exists(keys.event(event_id)) == 0  # the live record is gone


async def test_a_lost_lease_and_a_late_completion_are_in_the_timeline(redis_url: str) -> None:
    queue = EventQueue.from_url(redis_url, lease_seconds=0.1)
    try:
        event_id = await add(queue)
        stalled = await claim(queue, "proc-a")
        await asyncio.sleep(0.2)
        assert await queue.reap_expired_leases(grace_seconds=0.1) == [event_id]
        assert await queue.complete(stalled, "proc-a", {"ok": True}) == "completed_late"
        record = await finished(queue, event_id)
    finally:
        await queue.close()
    steps = [s for s in record.timeline() if s.step == "attempt"]
    assert [(s.consumer, s.outcome, s.late) for s in steps] == [
        ("proc-a", "lease_expired", False), ("proc-a", "completed", True)]
    assert steps[0].error == "processor proc-a was lost: its lease expired before the event finished"
    assert record.times_queued == 2


async def test_operator_retry_and_delete_name_the_operator(queue: EventQueue) -> None:
    event_id = (await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE),
                                    added_by="10.0.0.5")).event_id
    await queue.fail(await claim(queue, "proc-a"), "proc-a", "boom", requeue_delay=600)
    await queue.retry_now(event_id, by="10.0.0.7")
    await queue.fail(await claim(queue, "proc-b"), "proc-b", "boom again", requeue_delay=600)
    await queue.delete(event_id, by="10.0.0.8")

    record = await finished(queue, event_id)
    assert (record.outcome, record.finished_by, record.added_by) == (
        Outcome.DELETED, "10.0.0.8", "10.0.0.5")
    assert [(s.step, s.by, s.outcome) for s in record.timeline()] == [
        ("received", None, None), ("queued", "10.0.0.5", None), ("attempt", None, "failed"),
        ("retried", "10.0.0.7", None), ("attempt", None, "failed"), ("deleted", "10.0.0.8", None)]
    assert record.last_error == "boom again"


async def test_a_finished_event_cannot_be_deleted_or_retried_and_nothing_changes(
    queue: EventQueue,
) -> None:
    event_id = await add(queue)
    await queue.complete(await claim(queue, "proc-a"), "proc-a", {"ok": 1})
    before = await everything(queue.redis)
    with pytest.raises(EventFinished) as deleted:
        await queue.delete(event_id, by="10.0.0.8")
    with pytest.raises(EventNotWaiting) as retried:
        await queue.retry_now(event_id, by="10.0.0.8")
    assert (deleted.value.state, retried.value.state) == ("completed", "completed")
    assert await everything(queue.redis) == before


async def test_a_timeline_failing_for_days_stays_bounded(queue: EventQueue) -> None:
    event_id = await add(queue)
    for attempt in range(1, 41):
        event = await claim(queue, f"proc-{attempt}")
        await queue.fail(event, event.consumer or "", f"attempt {attempt}: " + "x" * 3000,
                         requeue_delay=0)
        await queue.promote_due_retries()
    live = await queue.get(event_id)
    stored = await queue.redis.hget(keys.event(event_id), "steps")
    assert stored is not None and len(stored.encode()) <= 8192
    assert live.steps_dropped > 0 and len(live.steps) + live.steps_dropped == 40
    last = live.timeline()[-1]
    assert (last.attempt, last.consumer) == (40, "proc-40")
    assert last.error is not None and last.error.startswith("attempt 40: ")
    assert len(last.error) == 500  # the step keeps a shorter error than last_error
    assert live.last_error is not None and len(live.last_error) == len("attempt 40: ") + 3000


async def test_records_past_the_count_or_the_age_are_removed_oldest_first(redis_url: str) -> None:
    queue = EventQueue.from_url(redis_url, retention=Retention(max_events=3,
                                                               max_age_seconds=0.3))
    try:
        ids: list[str] = []
        for i in range(4):
            ids.append(await add(queue, f"DU{i}"))
            await queue.complete(await claim(queue, "proc"), "proc")
        kept = [e.event_id for e in (await queue.history()).entries]
        assert kept == ids[:0:-1]  # newest first, the oldest went with the fourth
        await asyncio.sleep(0.35)
        assert await queue.trim_finished() == 3  # nothing finished since: the age still bounds
        assert (await queue.history()).entries == []
        assert await queue.redis.hlen(keys.FINISHED) == 0
        assert await queue.redis.zcard(keys.FINISHED_INDEX) == 0
    finally:
        await queue.close()


async def finish_mixture(queue: EventQueue, count: int) -> list[FinishedEvent]:
    """``count`` finished events over three accounts and three commands (each more frequent than
    the next, so that either filter may be the narrower), some deleted, a few milliseconds
    apart; returns them newest first."""
    rng = random.Random(13)
    commands = [ExecCommand.REBALANCE, ExecCommand.PRINT_POSITIONS, ExecCommand.CANCEL_ORDERS]
    ids: list[str] = []
    for _ in range(count):
        account = rng.choices(["DU1", "DU2", "DU3"], weights=[6, 3, 1])[0]
        command = rng.choices(commands, weights=[6, 3, 1])[0]
        event_id = (await queue.enqueue(NewEvent(account_id=account, exec_command=command))).event_id
        if rng.random() < 0.3:
            await queue.delete(event_id, by="10.0.0.1")
        else:
            await queue.complete(await claim(queue, "proc"), "proc", {"n": len(ids)})
        ids.append(event_id)
        await asyncio.sleep(0.003)
    return [await finished(queue, i) for i in reversed(ids)]


def reference(everything: list[FinishedEvent], query: HistoryQuery) -> list[str]:
    return [e.event_id for e in everything
            if (query.account_id is None or e.account_id == query.account_id)
            and (query.exec_command is None or e.exec_command == query.exec_command.value)
            and (query.outcome is None or e.outcome == query.outcome)
            and (query.since is None or (e.finished_at and e.finished_at >= query.since))
            and (query.until is None or (e.finished_at and e.finished_at < query.until))]


async def walk(queue: EventQueue, query: HistoryQuery) -> tuple[list[str], list[str]]:
    """Every entry, page after page to the oldest, then back to the newest."""
    down: list[str] = []
    page = await queue.history(query)
    pages = [page]
    while True:
        down += [e.event_id for e in page.entries]
        if page.older is None:
            break
        page = await queue.history(HistoryQuery(**{**vars(query), "before": page.older}))
        pages.append(page)
        assert len(pages) <= 100, "the pages never end"
    up = [e.event_id for e in pages[-1].entries]
    cursor = pages[-1].newer
    while cursor is not None:
        page = await queue.history(HistoryQuery(**{**vars(query), "after": cursor}))
        up = [e.event_id for e in page.entries] + up
        cursor = page.newer
        assert len(up) <= 1000, "the pages never end"
    return down, up


async def test_filters_and_pages_match_a_plain_filter_of_every_record(queue: EventQueue) -> None:
    every = await finish_mixture(queue, 60)
    times = sorted(e.finished_at for e in every if e.finished_at)
    since, until = times[10], times[45]
    queries = [
        HistoryQuery(limit=7),
        HistoryQuery(account_id="DU2", limit=4),
        HistoryQuery(exec_command=ExecCommand.PRINT_POSITIONS, limit=5),
        HistoryQuery(outcome=Outcome.DELETED, limit=3),
        HistoryQuery(outcome=Outcome.COMPLETED, limit=9),
        HistoryQuery(account_id="DU1", exec_command=ExecCommand.REBALANCE, limit=2),
        HistoryQuery(account_id="DU3", exec_command=ExecCommand.REBALANCE, limit=2),
        HistoryQuery(account_id="DU1", exec_command=ExecCommand.CANCEL_ORDERS, limit=2),
        HistoryQuery(account_id="DU3", outcome=Outcome.DELETED, limit=2),
        HistoryQuery(account_id="DU1", outcome=Outcome.DELETED, limit=4),
        HistoryQuery(account_id="DU2", exec_command=ExecCommand.PRINT_POSITIONS, limit=2),
        HistoryQuery(exec_command=ExecCommand.CANCEL_ORDERS, outcome=Outcome.COMPLETED, limit=3),
        HistoryQuery(since=since, until=until, limit=6),
        HistoryQuery(account_id="DU2", since=since, until=until, limit=3),
        HistoryQuery(since=until, limit=100),
        HistoryQuery(until=since, limit=100),
        HistoryQuery(account_id="DU9", limit=5),
    ]
    for query in queries:
        want = reference(every, query)
        down, up = await walk(queue, query)
        assert down == want, query
        assert up == want, query
        if len(want) > query.limit:  # a first page is full and says where to go on
            assert len((await queue.history(query)).entries) == query.limit
    assert len(reference(every, queries[3])) > 3 and len(reference(every, queries[0])) == 60


async def test_each_page_reads_at_most_its_budget_and_says_where_to_go_on(
    redis_url: str,
) -> None:
    queue = EventQueue.from_url(redis_url, history_scan_budget=8, history_scan_calls=1)
    try:
        for i in range(20):
            await add(queue, "DU1", ExecCommand.REBALANCE)
            await queue.complete(await claim(queue, "proc"), "proc", {"i": i})
            await add(queue, "DU2", ExecCommand.PRINT_EQUITY)
            await queue.complete(await claim(queue, "proc"), "proc", {"i": i})
        sparse = HistoryQuery(account_id="DU1", exec_command=ExecCommand.PRINT_EQUITY, limit=5)
        first = await queue.history(sparse)
        assert first.entries == [] and first.older is not None  # 8 read, none matched, go on
        pages = 1
        page = first
        while page.older is not None:
            page = await queue.history(HistoryQuery(**{**vars(sparse), "before": page.older}))
            assert page.entries == []
            pages += 1
        assert pages == 3  # 20 members of the smaller index, 8 at a time
        wide = await queue.history(HistoryQuery(limit=20))
        assert len(wide.entries) == 20  # a budget below the limit never cuts a plain page
    finally:
        await queue.close()
    patient = EventQueue.from_url(redis_url, history_scan_budget=8, history_scan_calls=2)
    try:
        first = await patient.history(sparse)
        assert first.entries == [] and first.older is not None  # two scripts: 16 read
        last = await patient.history(HistoryQuery(**{**vars(sparse), "before": first.older}))
        assert last.entries == [] and last.older is None
    finally:
        await patient.close()


async def test_cursors_and_ranges_are_checked(queue: EventQueue) -> None:
    with pytest.raises(InvalidCursor):
        await queue.history(HistoryQuery(before="not-a-cursor"))
    with pytest.raises(InvalidCursor):
        await queue.history(HistoryQuery(after="MTIz"))  # base64 of "123"
    now = (await queue.stats()).redis_time
    with pytest.raises(ValueError, match="since must be earlier"):
        HistoryQuery(since=now, until=now - timedelta(seconds=1))
    with pytest.raises(ValueError, match="not both"):
        HistoryQuery(before="a", after="b")


async def test_scripts_refuse_bad_retention_arguments_before_writing(queue: EventQueue) -> None:
    event_id = await add(queue)
    event = await claim(queue, "proc")
    k = queue.keys
    before = await everything(queue.redis)
    with pytest.raises(ResponseError, match="max events"):
        await queue._run(
            "complete",
            [k.queue, k.processing, k.leases, k.retry_wait, k.active_events, k.dedup_index,
             k.requeued, k.events_all, k.finished, k.finished_index, k.event(event_id),
             k.by_account("DU1"), k.by_command("rebalance"), k.account_lock("DU1")],
            [event_id, event.claim_token, "{}", "", "proc", "many", 1000])
    assert await everything(queue.redis) == before
    await queue.complete(event, "proc")


async def test_the_history_list_of_earlier_versions_becomes_finished_records(
    queue: EventQueue,
) -> None:
    now = datetime_to_ms((await queue.stats()).redis_time)
    old = [
        {"event_id": "e0", "account_id": "DU1", "exec_command": "rebalance", "times_queued": 1,
         "created_at": now - 40 * 86_400_000, "finished_at": now - 40 * 86_400_000,
         "outcome": "completed", "last_error": ""},  # older than the 30 days kept
        {"event_id": "e1", "account_id": "DU1", "exec_command": "rebalance", "times_queued": 1,
         "created_at": now - 9000, "finished_at": now - 8000,
         "outcome": "completed", "last_error": ""},
        {"event_id": "e2", "account_id": "DU2", "exec_command": "print-orders", "times_queued": 2,
         "created_at": now - 7000, "finished_at": now - 6000,
         "outcome": "deleted", "last_error": "boom"},
    ]
    texts = [json.dumps(old[0]), json.dumps(old[1])[:-1] + ',"result":{"orders":[]}}',
             json.dumps(old[2])]
    for text in texts:  # newest first, as the earlier versions kept them
        await queue.redis.lpush(keys.HISTORY, text)
    await queue.redis.lpush(keys.HISTORY, "not json")

    assert await queue.migrate_legacy_keys() == 3
    assert await queue.redis.exists(keys.HISTORY) == 0
    assert await queue.redis.hexists(keys.FINISHED, "e0") == 0  # past the retention
    entries = (await queue.history()).entries
    assert [(e.event_id, e.outcome, e.times_queued) for e in entries] == [
        ("e2", Outcome.DELETED, 2), ("e1", Outcome.COMPLETED, 1)]
    assert entries[1].result == {"orders": []}
    deleted = await queue.history(HistoryQuery(outcome=Outcome.DELETED, account_id="DU2"))
    assert [e.event_id for e in deleted.entries] == ["e2"]
    assert (await finished(queue, "e1")).timeline()[-1].step == "completed"
    assert await queue.migrate_legacy_keys() == 0  # nothing left to move


async def test_a_record_written_by_hand_under_a_live_id_is_replaced_not_listed_twice(
    queue: EventQueue,
) -> None:
    event_id = await add(queue)
    event = await claim(queue, "proc")
    stale = f"0000000001000\t\trebalance\tcompleted\t{event_id}"
    await queue.redis.hset(keys.FINISHED, event_id, json.dumps(
        {"event_id": event_id, "account_id": None, "exec_command": "rebalance",
         "finished_at": 1000, "outcome": "completed"}))
    await queue.redis.zadd(keys.FINISHED_INDEX, {f"t:{stale}": 0, f"a::{stale}": 0,
                                                 f"c:rebalance:{stale}": 0})
    assert await queue.complete(event, "proc", {"ok": True}) == "completed"
    (entry,) = (await queue.history()).entries
    assert (entry.event_id, entry.account_id, entry.result) == (event_id, "DU1", {"ok": True})
    assert await queue.redis.zcard(keys.FINISHED_INDEX) == 3  # the new record's three entries
