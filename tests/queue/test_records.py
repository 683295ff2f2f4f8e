"""Decoding stored records, including malformed ones, and the invariant checker itself."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from event_queue import EventQueue, EventState, ExecCommand, NewEvent, keys
from event_queue.events import decode_event
from event_queue.invariants import violations


def test_unknown_command_stays_readable() -> None:
    event = decode_event("e1", {"account_id": "DU1", "exec_command": "health",
                                "created_at": "1700000000000", "times_queued": "3"})
    assert event.malformed is None
    assert event.command is None
    assert event.times_queued == 3


def test_malformed_record_is_visible_with_a_reason() -> None:
    event = decode_event("e2", {"account_id": "DU1", "times_queued": "x", "state": "weird"})
    assert event.malformed is not None
    assert event.account_id == "DU1"
    assert event.state is EventState.QUEUED
    assert event.times_queued == 1


_FRESH = {"event_id": "e3", "account_id": "DU1", "exec_command": "rebalance",
          "dedup_key": "DU1:rebalance", "times_queued": "1", "created_at": "1764633600325",
          "updated_at": "1764633600325", "data": '{"order_type":"MKT"}', "state": "queued"}


@pytest.mark.parametrize("fields", [
    _FRESH,
    {**_FRESH, "last_error": "", "next_attempt_at": "", "result": "", "consumer": "", "claim": "",
     "idempotency_key": ""},
    {**_FRESH, "state": "processing", "consumer": "worker-1", "claim": "c1", "attempts": "2",
     "claimed_at": "1764633601000", "idempotency_key": "webhook:abc", "added_by": "10.0.0.1"},
    {**_FRESH, "state": "retry_wait", "times_queued": "3", "last_error": "IBKR down",
     "next_attempt_at": "1764633700000", "result": '{"orders":[]}', "steps_dropped": "1",
     "steps": '{"step":"attempt","at":1764633601000,"outcome":"failed"}\n[1]\nnot json'},
])
def test_a_well_formed_record_decodes_whole(fields: dict[str, str]) -> None:
    event = decode_event("e3", fields)
    assert event.malformed is None
    assert (event.account_id, event.exec_command, event.data) == (
        "DU1", "rebalance", {"order_type": "MKT"})
    assert event.times_queued == int(fields["times_queued"])
    assert event.state is EventState(fields["state"])


@pytest.mark.parametrize(("data", "reason"), [
    ("[1, 2]", "dictionary"), ('"text"', "dictionary"),
    ("{bad", "JSONDecodeError"),
])
def test_a_record_whose_data_is_not_an_object_is_malformed(data: str, reason: str) -> None:
    event = decode_event("e4", {**_FRESH, "data": data})
    assert event.malformed is not None
    assert reason in event.malformed or "validation error" in event.malformed
    assert (event.account_id, event.data) == ("DU1", {})


def test_new_event_rejects_account_ids_that_break_the_dedup_key() -> None:
    with pytest.raises(ValueError, match="account_id"):
        NewEvent(account_id="DU1:rebalance", exec_command=ExecCommand.REBALANCE)


@pytest.mark.allow_inconsistent
async def test_checker_finds_a_stuck_dedup_key(redis_client: aioredis.Redis) -> None:
    await redis_client.sadd(keys.ACTIVE_EVENTS, "DU1:rebalance")
    problems = await violations(redis_client)
    assert any("DU1:rebalance" in p for p in problems)


@pytest.mark.allow_inconsistent
async def test_checker_finds_a_lost_event(queue: EventQueue) -> None:
    result = await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    await queue.redis.lrem(keys.QUEUE, 0, result.event_id)  # what a BRPOP crash would do
    problems = await violations(queue.redis)
    assert any("lost" in p for p in problems)


async def test_checker_passes_on_a_consistent_queue(queue: EventQueue) -> None:
    await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.REBALANCE))
    assert await violations(queue.redis) == []


def test_log_lines_are_one_json_object_with_the_fields() -> None:
    import json
    import logging

    from event_queue.logs import JsonFormatter

    record = logging.makeLogRecord({"name": "x", "levelname": "WARNING", "msg": "event %s",
                                    "args": ("failed",), "fields": {"event_id": "e1"},
                                    "times_queued": 2, "color_message": "ansi"})
    line = JsonFormatter().format(record)

    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["msg"] == "event failed"
    assert parsed["level"] == "warning"
    assert parsed["event_id"] == "e1"
    assert parsed["times_queued"] == 2
    assert "color_message" not in parsed and "fields" not in parsed


@pytest.mark.parametrize("created", [
    1_700_000_000.0, 1_700_000_000.9995, 1_700_000_000.9999996, 1_700_000_001.0004,
    1_764_633_600.325, 1_764_633_600.3249996, 946_684_799.999,
])
def test_log_timestamps_are_what_datetime_writes(created: float) -> None:
    import logging
    from datetime import UTC, datetime

    from event_queue.logs import JsonFormatter

    formatter = JsonFormatter()
    for when in (created, created + 0.5, created):  # the cached second is reused and replaced
        record = logging.makeLogRecord({"name": "x", "msg": "m", "created": when})
        want = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(record))["ts"] == want


def test_log_values_json_cannot_take_natively_are_written_as_text() -> None:
    import logging
    from pathlib import PurePosixPath

    from event_queue.logs import JsonFormatter

    record = logging.makeLogRecord({"name": "x", "msg": "m", "fields": {
        "path": PurePosixPath("/etc/x"), "huge": 10**30, "error": ValueError("boom")}})
    parsed = json.loads(JsonFormatter().format(record))
    assert (parsed["path"], parsed["huge"], parsed["error"]) == ("/etc/x", 10**30, "boom")


def test_a_script_carries_only_the_helpers_it_uses() -> None:
    from event_queue import scripts

    lease = scripts.source("lease")
    assert "local function now_ms" in lease and "local function int_arg" in lease
    assert "local function keep_finished" not in lease  # the finishing helpers stay out
    complete = scripts.source("complete")
    # keep_finished is called by the body; trim_finished only through it: both are there, in
    # the prelude's order, so every helper is defined before the one that calls it.
    assert complete.index("local function trim_finished") < complete.index(
        "local function keep_finished") < complete.index("KEYS[1]")
    for name in scripts.ALL:  # nothing of the prelude is cut in the middle
        helpers = scripts.source(name).removesuffix(scripts.ALL[name])
        assert helpers.count("local function") == helpers.count("\nend\n")


def test_a_malformed_record_still_summarizes_for_health_and_status() -> None:
    from event_queue.stats import summarize_record

    good = summarize_record("e1", "DU1", "rebalance", "3", "1700000000000", "retry_wait", "boom")
    assert (good.times_queued, good.state, good.last_error) == (3, "retry_wait", "boom")
    assert good.created_at is not None and good.created_at.year == 2023
    bad = summarize_record("e2", "", "", "many", "yesterday", "lost", "")
    assert (bad.times_queued, bad.created_at, bad.state, bad.last_error) == (1, None, "queued", None)
