"""Every Redis key name of the queue contract, spelled once.

The names ``rebalance_queue`` and ``active_events`` come from the user's plan and are kept as they are.
Services never build key strings themselves: they call :class:`event_queue.EventQueue`.
"""

from __future__ import annotations

QUEUE = "rebalance_queue"  # LIST of ready event ids, FIFO (RPUSH at the tail, claim from the head)
ACTIVE_EVENTS = "active_events"  # SET of dedup keys "{account_id}:{exec_command}"
DEDUP_INDEX = "active_event_ids"  # HASH dedup key -> event id (answers "duplicate of which event?")
PROCESSING = "processing"  # LIST of claimed event ids (the BLMOVE target)
LEASES = "leases"  # ZSET event id -> lease expiry (ms, Redis clock)
RETRY_WAIT = "retry_wait"  # ZSET event id -> due time (ms) of its next attempt
REQUEUED = "requeued_events"  # ZSET event id -> times_queued, only for times_queued > 1
EVENTS_ALL = "events:all"  # ZSET event id -> created_at (us), every live event
HISTORY = "history"  # LIST of JSON summaries of finished events, newest first, capped
PROCESSORS = "processors"  # ZSET consumer id -> last heartbeat (ms)
PROCESSOR_INFO = "processor_info"  # HASH consumer id -> JSON description
AUDIT = "audit"  # LIST of JSON operator actions, newest first, capped

_EVENT = "event:"
_BY_ACCOUNT = "events:account:"
_BY_COMMAND = "events:command:"
_IDEMPOTENCY = "idempotency:"
_ACCOUNT_LOCK = "lock:account:"


def event(event_id: str) -> str:
    """HASH holding one event's fields."""
    return _EVENT + event_id


def event_pattern() -> str:
    """Glob matching every event hash (for the invariant checker, never on a hot path)."""
    return _EVENT + "*"


def by_account(account_id: str) -> str:
    """ZSET of the live events of one account, scored by created_at (us)."""
    return _BY_ACCOUNT + account_id


def by_command(exec_command: str) -> str:
    """ZSET of the live events of one command, scored by created_at (us)."""
    return _BY_COMMAND + exec_command


def idempotency(key: str) -> str:
    """STRING (with TTL) mapping a sender's idempotency key (e.g. a webhook id) to its event id."""
    return _IDEMPOTENCY + key


def account_lock(account_id: str) -> str:
    """STRING (with TTL) holding the token of whoever runs a command for this account."""
    return _ACCOUNT_LOCK + account_id


def dedup_key(account_id: str, exec_command: str) -> str:
    """The deduplication key of the plan: one active event per account and command."""
    return f"{account_id}:{exec_command}"
