"""Micro-batching: the enqueues of concurrent requests share one atomic ``enqueue_many`` call.

A request adds its event to a pending list and waits for its own result. A flusher sends whatever is
pending as one script call (one round trip, one AOF fsync), and when that call returns sends what
piled up meanwhile. At most ``concurrency`` calls are in flight, each of at most ``max_size`` events.
An idle broker therefore sends a lone event at once; a busy one sends bigger batches.

More than one call goes out only while Redis answers: until a call succeeds (at start, and after
any call found Redis unavailable) one call at a time is sent. redis-py opens a pool's connections
one after another, so calls that each needed a new connection to a hung Redis would time out one
after another, and the last waiting request would get its 503 only after several timeouts.

A request whose batch has left gets that batch's exact outcome, never a guess: the Redis
client's own timeout bounds the call, and a request is never answered 503 while its event may be
queued. A request still waiting to leave is failed (and never sent) only when no batch has made
progress for ``deadline`` seconds: waiting behind a batch in flight is not counted against it. A
watchdog, ticking every ``tick`` seconds (one timer for the whole broker rather than one per
request), does that. When a batch finds Redis unavailable, the requests waiting behind it (none
of them sent) get the same 503 at once instead of each paying another timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from event_queue import EnqueueResult, EventQueue, NewEvent, QueueUnavailable


@dataclass(slots=True)
class _Pending:
    event: NewEvent
    idempotency_key: str | None
    future: asyncio.Future[EnqueueResult]
    since: float  # monotonic time it started waiting


class EnqueueBatcher:
    """Coalesces concurrent enqueues; every caller still gets its own exact answer."""

    def __init__(
        self,
        queue: EventQueue,
        *,
        max_size: int,
        concurrency: int,
        deadline: float,
        tick: float = 0.1,
    ) -> None:
        self._queue = queue
        self._max_size = max_size
        self._concurrency = concurrency
        self._deadline = deadline
        self._tick = tick
        self._pending: deque[_Pending] = deque()
        self._in_flight: list[list[_Pending]] = []
        self._flushing = 0  # flushers running; a flusher stops only when nothing is pending
        self._tasks: set[asyncio.Task[None]] = set()  # strong references to running tasks
        self._watchdog: asyncio.Task[None] | None = None
        self._progress = time.monotonic()  # when a batch last left or came back
        self._answering = False  # the last call that ended had an answer from Redis

    async def enqueue(self, event: NewEvent, *, idempotency_key: str | None) -> EnqueueResult:
        """Enqueue one event with the next batch; raise QueueUnavailable on failure or timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[EnqueueResult] = loop.create_future()
        self._pending.append(_Pending(event, idempotency_key, future, time.monotonic()))
        if self._watchdog is None:
            self._watchdog = loop.create_task(self._watch())
        if self._flushing < (self._concurrency if self._answering else 1):
            self._flushing += 1
            self._spawn(self._flush())
        return await future

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        try:
            while batch := self._take():
                self._in_flight.append(batch)
                self._progress = time.monotonic()
                try:
                    await self._send(batch)
                finally:
                    self._in_flight.remove(batch)
                    self._progress = time.monotonic()
        finally:
            self._flushing -= 1  # no await since the last _take(): nothing can be left behind

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._pending and len(batch) < self._max_size:
            item = self._pending.popleft()
            if not item.future.done():  # done = the watchdog already failed it
                batch.append(item)
        return batch

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            results = await self._queue.enqueue_many(
                [(item.event, item.idempotency_key) for item in batch]
            )
            answers = list(zip(batch, results, strict=True))
        except (QueueUnavailable, RedisError) as exc:  # RedisError: e.g. OOM, READONLY replica
            self._answering = False
            unavailable = exc if isinstance(exc, QueueUnavailable) else QueueUnavailable(
                type(exc).__name__)
            # Redis was just seen unavailable: those waiting behind this batch (none of them
            # sent) are answered now rather than each paying another timeout.
            _fail([*batch, *self._pending], unavailable)
            return
        except Exception as exc:  # a bug: each caller sees it, later batches still go out
            _fail(batch, exc)
            return
        self._answering = True
        for item, result in answers:
            if not item.future.done():
                item.future.set_result(result)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            if now - self._progress < self._deadline:
                continue
            stale = [i for i in self._pending if now - i.since >= self._deadline]
            _fail(stale, QueueUnavailable(f"no batch could leave within {self._deadline} s"))

    async def close(self) -> None:
        """Wait for the batches in flight, then stop the watchdog (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog


def _fail(items: Iterable[_Pending], exc: Exception) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(exc)
