"""The processor's side of the queue contract, named as in the plan (Phase 1.3).

A thin layer over :class:`event_queue.EventQueue`: it fixes the consumer id, the requeue delay and
the account-lock lifetime once, so the worker reads as its lifecycle. No Redis command is sent here
directly; every state change is one of the queue's scripts.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from event_processor.config import Settings
from event_queue import Claim, Event, EventQueue
from event_queue.stats import LockRenewal


class QueueService:
    """Claim, lock, renew, complete, requeue and hand back events for one consumer."""

    def __init__(
        self,
        queue: EventQueue,
        *,
        consumer_id: str,
        requeue_delay: float,
        lock_seconds: float,
    ) -> None:
        self.queue = queue
        self.consumer_id = consumer_id
        self.requeue_delay = requeue_delay
        self.lock_seconds = lock_seconds

    @classmethod
    def from_settings(cls, settings: Settings, consumer_id: str) -> QueueService:
        """A service on its own connection pools, configured from ``settings``."""
        processing = settings.processing
        queue = EventQueue.from_url(
            settings.redis.url, timeout=settings.redis.timeout,
            lease_seconds=processing.lease_seconds, key_prefix=settings.redis.key_prefix,
            retention=settings.history.retention,
        )
        return cls(queue, consumer_id=consumer_id, requeue_delay=processing.requeue_delay,
                   lock_seconds=processing.lease_seconds)

    async def close(self) -> None:
        """Close the connection pools."""
        await self.queue.close()

    async def migrate_legacy_keys(self) -> int:
        """Move a queue kept under the key names of earlier versions to the tagged names."""
        return await self.queue.migrate_legacy_keys()

    async def claim_event(self, timeout: float) -> Claim | None:
        """Wait up to ``timeout`` seconds for the next ready event, lease it to this consumer and
        take its account lock (shared by every processor) if it is free, in one script."""
        return await self.queue.claim_and_lock(
            self.consumer_id, timeout=timeout, lock_token=self.new_lock_token(),
            lock_seconds=self.lock_seconds)

    def new_lock_token(self) -> str:
        """A token for one hold of an account lock, naming this processor."""
        return f"{self.consumer_id}:{uuid.uuid4().hex}"

    async def lock_account(self, event: Event, token: str) -> bool:
        """Take the account's lock (shared by every processor) for this claim of ``event``, if
        it is free; raises LeaseLost / EventNotFound when the claim no longer owns the event."""
        return await self.queue.lock_account(event, token, ttl=self.lock_seconds)

    async def acquire_account_lock(self, account_id: str, token: str) -> bool:
        """Take the account's lock if it is free, whatever the event (a command that lost its
        lease keeps its account this way)."""
        return await self.queue.acquire_account_lock(account_id, token, ttl=self.lock_seconds)

    async def unlock_account(self, account_id: str, token: str) -> bool:
        """Release the account's lock if ``token`` still holds it."""
        return await self.queue.release_account_lock(account_id, token)

    async def extend_account_lock(self, account_id: str, token: str) -> bool:
        """Keep holding the account's lock (used when the lease is gone but the command runs on)."""
        return await self.queue.extend_account_lock(account_id, token, ttl=self.lock_seconds)

    async def renew(self, event: Event, lock_token: str) -> LockRenewal:
        """Extend the event's lease and, with a token, the account lock (taken again if it had
        expired); raises LeaseLost, or AccountLockConflict when someone else took the lock."""
        return await self.queue.renew_lease(
            event, self.consumer_id, lock_token=lock_token, lock_seconds=self.lock_seconds
        )

    async def remove_from_queued(self, event: Event, result: Any, lock_token: str) -> str:
        """Complete the event: drop its live record and its ``{account_id}:{exec_command}`` dedup
        key; its finished record (result, timeline) is kept for the retention.

        Releases the account lock in the same script. Returns ``completed`` or ``completed_late``.
        """
        return await self.queue.complete(event, self.consumer_id, result, lock_token=lock_token)

    async def requeue_event(
        self, event: Event, error: str, lock_token: str
    ) -> tuple[int, datetime]:
        """Record a failure: ``times_queued + 1``, the error, back in the queue after the delay.

        The dedup key stays, so the broker keeps refusing duplicates while the event waits.
        """
        return await self.queue.fail(
            event, self.consumer_id, error,
            requeue_delay=self.requeue_delay, lock_token=lock_token,
        )

    async def release_event(self, event: Event, lock_token: str) -> None:
        """Hand an unfinished event back to the head of the queue without counting a failure."""
        await self.queue.release(event, self.consumer_id, lock_token=lock_token)

    async def reap_expired(self) -> list[str]:
        """Requeue (``times_queued + 1``) events whose processor stopped renewing their lease."""
        return await self.queue.reap_expired_leases()

    async def trim_history(self) -> int:
        """Remove finished records past the retention; returns how many."""
        return await self.queue.trim_finished()

    async def promote_due(self) -> int:
        """Move events whose requeue delay is over back into the queue."""
        return await self.queue.promote_due_retries()

    async def heartbeat(self, info: dict[str, Any]) -> None:
        """Say this processor is alive."""
        await self.queue.heartbeat(self.consumer_id, info)

    async def forget(self) -> None:
        """Remove this processor's heartbeat (clean shutdown)."""
        await self.queue.forget_processor(self.consumer_id)
