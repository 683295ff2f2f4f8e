"""Every Redis key name of the queue contract, spelled once.

Every key of one deployment starts with the same hash tag, ``{<prefix>}:`` (default prefix
``rebalancer``), so that all of them live in one Redis Cluster slot and every script, which touches
several keys at once, is cluster-safe. A different prefix lets several deployments share one Redis.
The names ``rebalance_queue`` and ``active_events`` come from the user's plan and are kept after
the tag. Services never build key strings themselves: they call :class:`event_queue.EventQueue`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

DEFAULT_PREFIX: Final = "rebalancer"
PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class InvalidKeyPrefix(ValueError):
    """A key prefix that could break the hash tag or the key names."""

    def __init__(self, prefix: str) -> None:
        super().__init__(
            f"invalid Redis key prefix {prefix!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
        self.prefix = prefix


def dedup_key(account_id: str, exec_command: str) -> str:
    """The deduplication key of the plan: one active event per account and command."""
    return f"{account_id}:{exec_command}"


@dataclass(frozen=True)
class Keys:
    """The key names of one deployment (one prefix, one hash tag)."""

    prefix: str = DEFAULT_PREFIX
    tag: str = field(init=False)

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise InvalidKeyPrefix(self.prefix)
        object.__setattr__(self, "tag", "{" + self.prefix + "}:")

    def _key(self, name: str) -> str:
        return self.tag + name

    @property
    def queue(self) -> str:
        """LIST of ready event ids, FIFO (RPUSH at the tail, claim from the head)."""
        return self._key("rebalance_queue")

    @property
    def active_events(self) -> str:
        """SET of dedup keys "{account_id}:{exec_command}"."""
        return self._key("active_events")

    @property
    def dedup_index(self) -> str:
        """HASH dedup key -> event id (answers "duplicate of which event?")."""
        return self._key("active_event_ids")

    @property
    def processing(self) -> str:
        """LIST of claimed event ids (the BLMOVE target)."""
        return self._key("processing")

    @property
    def leases(self) -> str:
        """ZSET event id -> lease expiry (ms, Redis clock)."""
        return self._key("leases")

    @property
    def retry_wait(self) -> str:
        """ZSET event id -> due time (ms) of its next attempt."""
        return self._key("retry_wait")

    @property
    def requeued(self) -> str:
        """ZSET event id -> times_queued, only for times_queued > 1."""
        return self._key("requeued_events")

    @property
    def events_all(self) -> str:
        """ZSET event id -> created_at (us), every live event."""
        return self._key("events:all")

    @property
    def finished(self) -> str:
        """HASH event id -> JSON record of a finished (completed or deleted) event, kept for the
        retention (a count and an age)."""
        return self._key("finished")

    @property
    def finished_index(self) -> str:
        """ZSET, all scores 0, ordered by member: the finished events by finish time, all of them
        and per account, per command and (deleted) per outcome (see :mod:`event_queue.scripts`)."""
        return self._key("finished_index")

    @property
    def history(self) -> str:
        """LIST of JSON summaries of finished events kept by earlier versions, newest first;
        moved into the finished records when a processor starts."""
        return self._key("history")

    @property
    def processors(self) -> str:
        """ZSET consumer id -> last heartbeat (ms)."""
        return self._key("processors")

    @property
    def processor_info(self) -> str:
        """HASH consumer id -> JSON description."""
        return self._key("processor_info")

    @property
    def audit(self) -> str:
        """LIST of JSON operator actions, newest first, capped."""
        return self._key("audit")

    def event(self, event_id: str) -> str:
        """HASH holding one event's fields."""
        return self._key("event:" + event_id)

    def event_pattern(self) -> str:
        """Glob matching every event hash (for the invariant checker and repair, never hot)."""
        return _glob_escape(self.tag) + "event:*"

    def event_id_of(self, key: str) -> str:
        """The event id in an event hash's key name."""
        return key.removeprefix(self.event(""))

    def by_account(self, account_id: str) -> str:
        """ZSET of the live events of one account, scored by created_at (us)."""
        return self._key("events:account:" + account_id)

    def by_command(self, exec_command: str) -> str:
        """ZSET of the live events of one command, scored by created_at (us)."""
        return self._key("events:command:" + exec_command)

    def idempotency(self, key: str) -> str:
        """STRING (with TTL) mapping a sender's idempotency key (e.g. a webhook id) to its event."""
        return self._key("idempotency:" + key)

    def account_lock(self, account_id: str) -> str:
        """STRING (with TTL) holding the token of whoever runs a command for this account."""
        return self._key("lock:account:" + account_id)

    def operation(self, operation_id: str) -> str:
        """STRING (short TTL) marking an operator action as done, so a resent call is answered
        with the same outcome instead of running again."""
        return self._key("op:" + operation_id)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


DEFAULT: Final = Keys()

# The default deployment's names, for tests and tools that inspect Redis directly.
QUEUE: Final = DEFAULT.queue
ACTIVE_EVENTS: Final = DEFAULT.active_events
DEDUP_INDEX: Final = DEFAULT.dedup_index
PROCESSING: Final = DEFAULT.processing
LEASES: Final = DEFAULT.leases
RETRY_WAIT: Final = DEFAULT.retry_wait
REQUEUED: Final = DEFAULT.requeued
EVENTS_ALL: Final = DEFAULT.events_all
HISTORY: Final = DEFAULT.history
FINISHED: Final = DEFAULT.finished
FINISHED_INDEX: Final = DEFAULT.finished_index
PROCESSORS: Final = DEFAULT.processors
PROCESSOR_INFO: Final = DEFAULT.processor_info
AUDIT: Final = DEFAULT.audit
event = DEFAULT.event
event_pattern = DEFAULT.event_pattern
by_account = DEFAULT.by_account
by_command = DEFAULT.by_command
idempotency = DEFAULT.idempotency
account_lock = DEFAULT.account_lock
