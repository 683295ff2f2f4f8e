"""Micro-batching, unit level: a gate-controlled stand-in for the queue shows exactly which events
leave together. (The end-to-end behaviour is tested over HTTP in test_concurrency.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import cast

import pytest

from event_broker.batching import EnqueueBatcher
from event_queue import EnqueueResult, EventQueue, ExecCommand, NewEvent, QueueUnavailable


class GatedQueue:
    """Records each enqueue_many call and holds it until the test opens the gate."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.fail_next: Exception | None = None

    async def enqueue_many(
        self, items: Sequence[tuple[NewEvent, str | None]]
    ) -> list[EnqueueResult]:
        self.calls.append([event.account_id for event, _ in items])
        await self.gate.wait()
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        return [EnqueueResult(event_id=f"id-{e.account_id}", dedup_key=e.dedup_key,
                              duplicate=False) for e, _ in items]


def event(account: str) -> NewEvent:
    return NewEvent(account_id=account, exec_command=ExecCommand.REBALANCE)


def batcher(fake: GatedQueue, *, max_size: int = 10, deadline: float = 2.0,
            concurrency: int = 1) -> EnqueueBatcher:
    return EnqueueBatcher(cast(EventQueue, fake), max_size=max_size, concurrency=concurrency,
                          deadline=deadline)


async def test_requests_arriving_during_a_call_leave_together_next() -> None:
    fake = GatedQueue()
    subject = batcher(fake)
    first = asyncio.create_task(subject.enqueue(event("A0"), idempotency_key=None))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(subject.enqueue(event(f"B{i}"), idempotency_key=None))
            for i in range(5)]
    await asyncio.sleep(0.01)
    fake.gate.set()
    results = await asyncio.gather(first, *rest)

    assert fake.calls == [["A0"], ["B0", "B1", "B2", "B3", "B4"]]
    assert [r.event_id for r in results] == ["id-A0"] + [f"id-B{i}" for i in range(5)]


async def test_with_three_calls_allowed_new_batches_leave_while_others_wait() -> None:
    # BATCH_CONCURRENCY=3 while Redis answers: a batch leaves while earlier ones wait for Redis
    # (and its fsync); only when three are in flight do new requests wait, then leave together.
    fake = GatedQueue()
    subject = batcher(fake, concurrency=3)
    fake.gate.set()
    await subject.enqueue(event("W0"), idempotency_key=None)  # Redis has answered
    fake.gate.clear()
    tasks = []
    for group, size in (("A", 1), ("B", 5), ("C", 3), ("D", 2)):
        tasks += [asyncio.create_task(subject.enqueue(event(f"{group}{i}"), idempotency_key=None))
                  for i in range(size)]
        await asyncio.sleep(0.01)
    assert fake.calls[1:] == [["A0"], [f"B{i}" for i in range(5)], ["C0", "C1", "C2"]]
    fake.gate.set()
    results = await asyncio.gather(*tasks)

    assert fake.calls[4] == ["D0", "D1"] and len(fake.calls) == 5
    assert [r.event_id for r in results][-2:] == ["id-D0", "id-D1"]


async def one_at_a_time(fake: GatedQueue, subject: EnqueueBatcher, name: str) -> None:
    """A call leaves alone, the requests behind it wait for it, then leave together."""
    before = len(fake.calls)
    fake.gate.clear()
    first = asyncio.create_task(subject.enqueue(event(f"{name}0"), idempotency_key=None))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(subject.enqueue(event(f"{name}{i}"), idempotency_key=None))
            for i in range(1, 4)]
    await asyncio.sleep(0.01)
    assert fake.calls[before:] == [[f"{name}0"]]  # nothing else left while it waits
    fake.gate.set()
    await asyncio.gather(first, *rest, return_exceptions=True)
    assert fake.calls[before + 1:] == [[f"{name}{i}" for i in range(1, 4)]]


async def test_until_redis_answers_one_call_at_a_time_goes_out() -> None:
    # redis-py opens a pool's connections one after another: several calls each opening one to
    # a hung Redis would time out in turn. So a second call only leaves while Redis answers: not
    # before the first answer, and not again after a call found it unavailable.
    fake = GatedQueue()
    subject = batcher(fake, concurrency=3)
    await one_at_a_time(fake, subject, "A")  # at start
    fake.fail_next = QueueUnavailable("TimeoutError")
    with pytest.raises(QueueUnavailable):
        await subject.enqueue(event("X0"), idempotency_key=None)  # Redis found unavailable
    await one_at_a_time(fake, subject, "C")  # one at a time again
    # Redis answered again: three calls may be in flight.
    fake.gate.clear()
    tasks = []
    for i in range(2):
        tasks.append(asyncio.create_task(subject.enqueue(event(f"D{i}"), idempotency_key=None)))
        await asyncio.sleep(0.01)
    assert fake.calls[-2:] == [["D0"], ["D1"]]  # D1 left while D0 waited
    fake.gate.set()
    await asyncio.gather(*tasks)


async def test_batches_are_bounded() -> None:
    fake = GatedQueue()
    fake.gate.set()
    subject = batcher(fake, max_size=3)
    await asyncio.gather(*(subject.enqueue(event(f"C{i}"), idempotency_key=None)
                           for i in range(7)))

    assert [len(call) for call in fake.calls] == [3, 3, 1]


async def test_a_failed_call_fails_each_waiting_request_and_the_next_call_works() -> None:
    fake = GatedQueue()
    fake.fail_next = QueueUnavailable("ConnectionError")
    subject = batcher(fake)
    waiting = [asyncio.create_task(subject.enqueue(event(f"D{i}"), idempotency_key=None))
               for i in range(3)]
    await asyncio.sleep(0.01)
    fake.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    later = await subject.enqueue(event("E0"), idempotency_key=None)

    assert all(isinstance(o, QueueUnavailable) for o in outcomes)
    assert later.event_id == "id-E0"


async def test_a_request_that_gives_up_before_its_batch_leaves_is_never_sent() -> None:
    fake = GatedQueue()
    subject = batcher(fake, deadline=0.1)
    stuck = asyncio.create_task(subject.enqueue(event("F0"), idempotency_key=None))
    await asyncio.sleep(0.01)
    with pytest.raises(QueueUnavailable):
        await subject.enqueue(event("F1"), idempotency_key=None)  # no batch moved for 0.1 s
    fake.gate.set()
    assert (await stuck).event_id == "id-F0"  # its batch had left: it gets the real outcome
    after = await subject.enqueue(event("F2"), idempotency_key=None)

    assert fake.calls == [["F0"], ["F2"]]
    assert after.event_id == "id-F2"


class SlowQueue(GatedQueue):
    """Every call takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.gate.set()

    async def enqueue_many(
        self, items: Sequence[tuple[NewEvent, str | None]]
    ) -> list[EnqueueResult]:
        await asyncio.sleep(self.seconds)
        return await super().enqueue_many(items)


async def test_waiting_behind_a_batch_in_flight_does_not_count_against_the_deadline() -> None:
    subject = batcher(SlowQueue(0.25), deadline=0.3)
    first = asyncio.create_task(subject.enqueue(event("G0"), idempotency_key=None))
    await asyncio.sleep(0.1)
    # G1 waits 0.15 s behind G0's batch, then its own batch takes 0.25 s: 0.4 s in all, more
    # than the deadline, yet every batch moved in time and G1's event is queued: no 503.
    second = await subject.enqueue(event("G1"), idempotency_key=None)

    assert (await first).event_id == "id-G0"
    assert second.event_id == "id-G1"


class WrongCountQueue(GatedQueue):
    """Answers one result too few (a bug in the queue), then behaves."""

    async def enqueue_many(
        self, items: Sequence[tuple[NewEvent, str | None]]
    ) -> list[EnqueueResult]:
        results = await super().enqueue_many(items)
        return results[:-1] if len(self.calls) == 1 else results


async def test_a_batch_whose_results_do_not_match_fails_each_caller_and_the_next_works() -> None:
    fake = WrongCountQueue()
    fake.gate.set()
    subject = batcher(fake)
    outcomes = await asyncio.gather(
        *(subject.enqueue(event(f"H{i}"), idempotency_key=None) for i in range(3)),
        return_exceptions=True)
    later = await asyncio.wait_for(subject.enqueue(event("H9"), idempotency_key=None), 1)

    assert all(isinstance(o, ValueError) for o in outcomes), outcomes
    assert later.event_id == "id-H9"
