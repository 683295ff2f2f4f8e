"""A listing reads each record as :class:`ListedEvent` without building the whole Event: the
result must be what the full decoder gives, for every record, well formed or not."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from event_queue import EventQueue, EventState, ExecCommand, ListedEvent, NewEvent, scripts
from event_queue.events import LISTED_FIELDS, decode_event, decode_listed

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=8)


def _json_text(value: Any) -> str:
    return json.dumps(value)  # NaN and Infinity as the standard library writes them


_MS = st.integers(min_value=-10**20, max_value=10**20)
_TEXT = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-10**25, max_value=10**25).map(str),
    _MS.map(str),
    _JSON.map(_json_text),
    st.sampled_from(["", " 1", "1.5", "NaN", "\ufeff{}", "1e400", "[1]", '"x"', "{bad",
                     "99999999999999999999", "٣", "queued", "processing", "retry_wait",
                     "completed", "rebalance", "DU1", '{"a":' * 1100 + "1" + "}" * 1100]))
_FIELDS = ("account_id", "exec_command", "times_queued", "created_at", "data", "state",
           "last_error", "next_attempt_at", "result", "consumer", "claim", "idempotency_key",
           "attempts", "claimed_at", "added_by", "steps", "steps_dropped", "dedup_key")
_WELL_FORMED = st.fixed_dictionaries(
    {"account_id": st.text(string.ascii_letters + string.digits, min_size=1, max_size=8),
     "exec_command": st.sampled_from([c.value for c in ExecCommand]),
     "created_at": st.integers(min_value=0, max_value=4 * 10**12).map(str)},
    optional={"times_queued": st.integers(min_value=1, max_value=10**6).map(str),
              "state": st.sampled_from([s.value for s in EventState]),
              "data": st.dictionaries(st.text(max_size=5), _JSON, max_size=3).map(json.dumps),
              "last_error": st.text(max_size=20),
              "next_attempt_at": st.integers(min_value=0, max_value=4 * 10**12).map(str),
              "consumer": st.text(max_size=8), "result": _JSON.map(json.dumps)})
_ANY_RECORD = st.dictionaries(st.sampled_from(_FIELDS), _TEXT, max_size=len(_FIELDS))
# A well-formed record with one or two fields changed to anything.
_DAMAGED = st.builds(lambda good, bad: {**good, **bad}, _WELL_FORMED,
                     st.dictionaries(st.sampled_from(_FIELDS), _TEXT, min_size=1, max_size=2))


@settings(max_examples=1500)
@given(fields=_ANY_RECORD | _WELL_FORMED | _DAMAGED)
def test_a_listing_reads_every_record_as_the_full_decoder_does(fields: dict[str, str]) -> None:
    full = decode_event("e1", fields)  # never raises, whatever the record holds
    assert decode_listed("e1", fields) == ListedEvent.of(full)
    # A listing reads only these fields: they are enough for the same answer.
    read = {name: value for name, value in fields.items() if name in LISTED_FIELDS}
    assert decode_listed("e1", read) == ListedEvent.of(full)


@pytest.mark.parametrize(("change", "malformed"), [
    ({}, False),
    ({"data": "[1]"}, True), ({"data": "{bad"}, True), ({"data": '{"x": NaN}'}, False),
    ({"result": "not json"}, True), ({"result": "[1, 2]"}, False),
    ({"result": '{"big": 123456789012345678901234567890}'}, False),
    ({"state": "completed"}, True), ({"created_at": "soon"}, True),
    ({"created_at": "99999999999999999999"}, True),
    ({"claimed_at": "99999999999999999999", "state": "processing"}, False),
])
def test_the_cases_the_fast_reader_hands_to_the_full_decoder(change: dict[str, str],
                                                            malformed: bool) -> None:
    fields = {"account_id": "DU1", "exec_command": "rebalance", "times_queued": "2",
              "created_at": "1764633600325", "data": '{"order_type":"MKT"}', "state": "queued",
              **change}
    listed = decode_listed("e1", fields)
    assert listed == ListedEvent.of(decode_event("e1", fields))
    assert (listed.malformed is not None) is malformed
    assert listed.dedup_key == "DU1:rebalance"


async def test_listing_gives_the_events_of_list_for_every_filter(
    queue: EventQueue, redis_client: aioredis.Redis
) -> None:
    for n in range(6):
        for command in (ExecCommand.REBALANCE, ExecCommand.PRINT_POSITIONS):
            await queue.enqueue(NewEvent(account_id=f"DU{n}", exec_command=command,
                                         data={"n": n}))
    claimed = await queue.claim("worker-1", timeout=1)
    assert claimed is not None
    await queue.fail(claimed, "worker-1", "IBKR down", requeue_delay=60)
    await queue.claim("worker-1", timeout=1)
    fifth = (await queue.list(limit=1, offset=5)).events[0]
    await redis_client.hset(queue.keys.event(fifth.event_id), "data", "[not an object]")
    filters: list[dict[str, Any]] = [
        {}, {"limit": 3, "offset": 2}, {"state": EventState.QUEUED},
        {"state": EventState.PROCESSING}, {"state": EventState.RETRY_WAIT},
        {"exec_command": "rebalance"}, {"account_id": "DU0"},
        {"account_id": "DU1", "exec_command": "print-positions"},
        {"state": EventState.QUEUED, "exec_command": "rebalance", "limit": 2, "offset": 1},
    ]
    for query in filters:
        full, listed = await queue.list(**query), await queue.listing(**query)
        assert listed.events == [ListedEvent.of(e) for e in full.events], query
        assert (listed.total, listed.limit, listed.offset) == (full.total, full.limit,
                                                               full.offset)
    everything = await queue.listing(limit=100)
    assert everything.total == 12
    assert sum(e.malformed is not None for e in everything.events) == 1
    assert {e.state for e in everything.events} == set(EventState)


async def test_a_listing_asks_redis_only_for_the_fields_it_shows(
    queue: EventQueue, redis_client: aioredis.Redis
) -> None:
    """A failing event's timeline (up to 8 KB) is not read for a listing, by either script that
    reads records for it (a page, or the records of an account or of an area walked)."""
    for n in range(3):
        await queue.enqueue(NewEvent(account_id=f"DU{n}", exec_command=ExecCommand.REBALANCE))
    ids = [e.event_id for e in (await queue.list()).events]
    await redis_client.hset(queue.keys.event(ids[0]), "steps", "x" * 8000)
    page = await redis_client.eval(scripts.source("page_records"), 1, queue.keys.events_all, "0", "9",
                                   queue.keys.event(""), *LISTED_FIELDS)
    fetched = await redis_client.eval(scripts.source("fetch"), 2, queue.keys.event(ids[0]),
                                      queue.keys.event("missing"), *LISTED_FIELDS)
    records = [*page[2::2], *fetched]
    read = {name for flat in records for name in flat[::2]}
    assert read <= set(LISTED_FIELDS)
    assert {"account_id", "exec_command", "created_at", "state"} <= read
    assert fetched[1] == []  # no record: nothing
    whole = await redis_client.eval(scripts.source("fetch"), 1, queue.keys.event(ids[0]))
    assert "steps" in whole[0][::2]  # asked for nothing in particular: every field
