"""What the worker knows about the events it holds, its account locks and its capacity."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from event_queue import Event


class Phase(StrEnum):
    """Where a held event is in its lifecycle; shutdown treats each phase differently."""

    WAITING = "waiting"  # claimed, waiting for its account: handed back at once on shutdown
    RUNNING = "running"  # its command runs: given the shutdown grace, then handed back
    SETTLING = "settling"  # being completed or requeued: never interrupted


@dataclass
class InFlight:
    """One claimed event, from claim until it is completed, requeued or handed back."""

    event: Event
    lock_token: str
    task: asyncio.Task[object] | None = None
    phase: Phase = Phase.WAITING
    lease_lost: bool = False
    parked: bool = False
    claimed_at: float = field(default_factory=time.monotonic)
    # The account lock: whether this event holds it, and when (monotonic) the last call that
    # confirmed it was sent. Redis expires the lock no earlier than that plus its ttl.
    lock_held: bool = False
    lock_confirmed_at: float = 0.0
    runner: asyncio.Task[object] | None = None  # the running command
    stop_reason: str | None = None  # why the command was stopped before it finished

    def confirm_lock(self, sent_at: float) -> None:
        """A call sent at ``sent_at`` found (or took) the account lock for this event."""
        self.lock_held = True
        self.lock_confirmed_at = max(self.lock_confirmed_at, sent_at)

    def stop_command(self, reason: str) -> None:
        """Stop the running command (it may no longer own its account); the first reason wins."""
        if self.runner is not None and not self.runner.done():
            self.stop_reason = self.stop_reason or reason
            self.runner.cancel()

    @property
    def event_id(self) -> str:
        """The held event's id."""
        return self.event.event_id


class AccountLocks:
    """One asyncio lock per account, dropped when nobody holds or waits for it.

    They keep two events of one account in this process from polling the shared Redis lock
    against each other; the Redis lock is what holds across processes.
    """

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()

    @asynccontextmanager
    async def hold(
        self, account_id: str, *, on_busy: Callable[[], Awaitable[None]]
    ) -> AsyncIterator[None]:
        """Hold the account's lock for the body of the ``async with``; ``on_busy`` runs first
        when the lock is taken and this caller has to wait."""
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        self._users[account_id] += 1
        try:
            if lock.locked():
                await on_busy()
            async with lock:
                yield
        finally:
            self._users[account_id] -= 1
            if not self._users[account_id]:
                del self._users[account_id], self._locks[account_id]

    def busy(self, account_id: str) -> bool:
        """True when another event of this account holds or waits for its lock here."""
        return self._users[account_id] > 0

    def __len__(self) -> int:
        return len(self._locks)


class Capacity:
    """How many events this process may hold.

    ``concurrency`` events may be active (being claimed, ready, running or settling); up to
    ``max_waiting`` more may be parked, waiting for an account that another event holds, so a busy
    account does not tie up the slots other accounts need. When the parking is full, a waiting
    event keeps its slot. Commands running at once are bounded separately, by ``concurrency``.
    """

    def __init__(self, concurrency: int, max_waiting: int) -> None:
        self.concurrency, self.max_waiting = concurrency, max_waiting
        self.active = self.parked = 0
        self.closed = False
        self._changed = asyncio.Condition()

    async def reserve(self) -> bool:
        """Wait for room to claim one more event; False once closed (the processor stops)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.closed or self.active < self.concurrency)
            if self.closed:
                return False
            self.active += 1
            return True

    async def park(self) -> bool:
        """Free the slot of an event that waits for its account; False when parking is full."""
        async with self._changed:
            if self.parked >= self.max_waiting:
                return False
            self.active, self.parked = self.active - 1, self.parked + 1
            self._changed.notify_all()
            return True

    def unpark(self) -> None:
        """A parked event got its account and becomes active again."""
        self.active, self.parked = self.active + 1, self.parked - 1

    async def done(self, *, parked: bool = False) -> None:
        """An event (or an empty claim) leaves this process."""
        async with self._changed:
            if parked:
                self.parked -= 1
            else:
                self.active -= 1
            self._changed.notify_all()

    async def close(self) -> None:
        """Wake every waiting claimer and refuse further reservations."""
        async with self._changed:
            self.closed = True
            self._changed.notify_all()
