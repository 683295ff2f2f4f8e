"""The async client of the queue contract: the only code that talks to Redis about queue state."""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypedDict, TypeVar, Unpack, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from event_queue import scripts
from event_queue.connections import AnyRedis, Connection, connect, parse_url, scan_keys
from event_queue.errors import (
    AccountLockConflict,
    EventFinished,
    EventNotFound,
    EventNotWaiting,
    EventProcessing,
    InvalidResult,
    LeaseLost,
    QueueUnavailable,
)
from event_queue.events import (
    LISTED_FIELDS,
    Event,
    EventState,
    ListedEvent,
    NewEvent,
    datetime_to_ms,
    decode_event,
    decode_listed,
    encode_json,
    encode_result,
    ms_to_datetime,
    new_event_id,
)
from event_queue.finished import (
    HISTORY_SCAN_BUDGET,
    HISTORY_SCAN_CALLS,
    FinishedEvent,
    HistoryPage,
    HistoryQuery,
    Retention,
    decode_cursor,
    decode_finished,
    encode_cursor,
)
from event_queue.keys import DEFAULT_PREFIX, Keys
from event_queue.migration import migrate_legacy_keys
from event_queue.stats import (
    EnqueueResult,
    EventPage,
    ListedPage,
    LockRenewal,
    Page,
    PageEvent,
    ProcessorInfo,
    QueueStats,
    RepairReport,
    summarize_record,
)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_LEASE_SECONDS = 30.0
STEP_ERROR_CHARS = 500  # an attempt's error as its timeline step keeps it (last_error: 4000)
_TRIM_BUDGET = 1000
_MIGRATE_BATCH = 500
DEFAULT_IDEMPOTENCY_SECONDS = 24 * 3600
DEFAULT_OPERATION_MARKER_SECONDS = 600.0
_PAGE_SCAN = 500


class ListFilters(TypedDict, total=False):
    """A listing's filters and page (:meth:`EventQueue.list`, :meth:`EventQueue.listing`):
    ``state``, ``account_id`` and ``exec_command`` (default: any), ``limit`` (default 100) and
    ``offset`` (default 0)."""

    state: EventState | None
    account_id: str | None
    exec_command: str | None
    limit: int
    offset: int


# Errors with which Redis refuses a command before running it: the command changed nothing, so the
# caller may answer 503 and try again later. Inside a script, the refusal comes at its first write
# (Redis checks OOM and the others only while the script has not written), so a refused script
# changed nothing either. Redis 6.2 reports a refusal inside a script as "ERR ... -OOM ...".
_REFUSALS = {
    "OOM": "Redis is out of memory (maxmemory reached, noeviction)",
    "MISCONF": "Redis refuses writes: it cannot persist (disk full or unwritable?)",
    "READONLY": "Redis is a read-only replica",
    "NOREPLICAS": "Redis has too few replicas to accept writes",
    "MASTERDOWN": "Redis lost its master",
    "LOADING": "Redis is loading its data",
    "BUSY": "Redis is busy running a script",
    "TRYAGAIN": "Redis asks to try again",
    "CLUSTERDOWN": "the Redis cluster is down",
}
_REFUSAL = re.compile(r"(?:^|-)(" + "|".join(_REFUSALS) + r")\b")
_REFUSAL_TYPES = {"OutOfMemoryError": "OOM", "ReadOnlyError": "READONLY"}


def refusal(exc: ResponseError) -> str | None:
    """What a Redis refusal means, or None when ``exc`` is not one."""
    code = _REFUSAL_TYPES.get(type(exc).__name__)
    if code is None:
        found = _REFUSAL.search(str(exc))
        code = found.group(1) if found else None
    return _REFUSALS[code] if code else None


# redis-py's text: "Error 111 connecting to host:6379. Connect call failed (...)."
_CONNECTING = re.compile(r"^Error (-?\d+) connecting to (.+?)\. (.*?)\.?$")
_ERRNO_TEXT = {"111": "connection refused (is Redis running there?)",
               "-2": "unknown host", "-3": "host name lookup failed (temporary)",
               "2": "no such socket file", "113": "no route to host", "13": "permission denied"}


def why_unreachable(exc: BaseException) -> str:
    """Why Redis could not be used, in words an operator can act on (never the URL's password)."""
    text = str(exc).strip()
    found = _CONNECTING.match(text)
    if found:
        code, where, detail = found.groups()
        return f"cannot connect to Redis at {where}: {_ERRNO_TEXT.get(code, detail.lower())}"
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return f"Redis did not answer in time ({text or 'timeout'})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _translate_errors(
    method: Callable[Concatenate[EventQueue, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[EventQueue, P], Coroutine[Any, Any, R]]:
    """Turn Redis connection failures, timeouts and refusals into :class:`QueueUnavailable`."""

    async def wrapper(self: EventQueue, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
            raise QueueUnavailable(why_unreachable(exc)) from exc
        except ResponseError as exc:
            reason = refusal(exc)
            if reason is None:
                raise
            raise QueueUnavailable(reason) from exc

    functools.update_wrapper(wrapper, method)
    return wrapper


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@dataclass(frozen=True)
class Claim:
    """An event just claimed by :meth:`EventQueue.claim_and_lock`.

    ``lock_token`` is the token the account lock was taken under ('' when someone else held the
    lock); ``sent_at`` is when (``time.monotonic()``) the call that took it was sent: Redis
    expires the lock no earlier than that plus its ttl.
    """

    event: Event
    lock_token: str
    sent_at: float


class EventQueue:
    """Queue operations over one ``redis.asyncio`` client (``decode_responses=True``).

    Every multi-key change is one Lua script from :mod:`event_queue.scripts`, registered once here.
    Claims block on a second connection pool without a socket timeout, so a long BLMOVE is never cut
    short by the read timeout that keeps the other calls from hanging.

    Every operator action (enqueue with an idempotency key, delete, retry, audit) is safe to send
    twice: each call carries a fresh operation id, and its script answers a resent call with the
    first call's outcome. That is what lets the management service resend a call once after a
    dropped connection without knowing whether the first one ran.
    """

    def __init__(
        self,
        redis: AnyRedis,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        retention: Retention | None = None,
        history_scan_budget: int = HISTORY_SCAN_BUDGET,
        history_scan_calls: int = HISTORY_SCAN_CALLS,
        idempotency_seconds: float = DEFAULT_IDEMPOTENCY_SECONDS,
        blocking_redis: AnyRedis | None = None,
        key_prefix: str = DEFAULT_PREFIX,
        operation_marker_seconds: float = DEFAULT_OPERATION_MARKER_SECONDS,
        wait_replicas: int = 0,
        wait_replicas_seconds: float = 1.0,
    ) -> None:
        self.redis = redis
        self.wait_replicas = wait_replicas
        self.wait_replicas_seconds = wait_replicas_seconds
        self.keys = Keys(key_prefix)
        self.lease_seconds = lease_seconds
        self.retention = retention or Retention()
        self.history_scan_budget = history_scan_budget
        self.history_scan_calls = history_scan_calls
        self.idempotency_seconds = idempotency_seconds
        self.operation_marker_seconds = operation_marker_seconds
        self._blocking = blocking_redis
        self._blocking_factory: Callable[[], Connection] | None = None
        self._owned: builtins.list[Connection] = []
        self._scripts: dict[str, AsyncScript] = {
            # RedisCluster registers scripts like Redis does; redis-py types it for Redis only.
            name: redis.register_script(scripts.source(name))  # type: ignore[misc]
            for name in scripts.ALL
        }

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: float = 2.0,
        max_connections: int | None = None,
        reconnect_once: bool = False,
        **options: Any,
    ) -> EventQueue:
        """Connect lazily to ``url`` (see :mod:`event_queue.connections` for the forms: one
        server, a Sentinel-managed primary, a cluster); every call gives up after ``timeout``.

        With ``reconnect_once``, a call on a connection the server dropped (Redis restarted) is
        sent once more at once on a new connection, so the first call after a restart does not
        fail. Timeouts are never resent. The scripts the management service calls are safe to
        resend (operator actions carry an operation id); the processor's are not all, so it does
        not use this.
        """
        target = parse_url(url)
        if options.get("wait_replicas") and target.kind == "cluster":
            raise ValueError("waiting for replicas is supported on a server or a Sentinel "
                             "primary, not on a cluster")
        main = connect(target, timeout=timeout, connect_timeout=timeout,
                       max_connections=max_connections, reconnect_once=reconnect_once)
        queue = cls(main.client, **options)
        queue._owned.append(main)
        queue._blocking_factory = lambda: connect(target, timeout=None, connect_timeout=timeout)
        return queue

    async def close(self) -> None:
        """Close the connection pools this client opened."""
        for connection in reversed(self._owned):
            await connection.close()
        self._owned.clear()

    async def _run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._scripts[name](keys=list(keys_), args=list(args))

    async def _run_replicated(
        self, name: str, keys_: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run a script, then WAIT on the same connection until enough replicas have it."""
        if isinstance(self.redis, RedisCluster):
            raise TypeError("waiting for replicas is supported on a server or a Sentinel primary")
        pipe = self.redis.pipeline(transaction=False)
        # A pipeline queues the script (and loads it first if needed); redis-py types the
        # client as Redis only.
        await self._scripts[name](keys=list(keys_), args=list(args), client=pipe)  # type: ignore[arg-type]
        pipe.execute_command("WAIT", self.wait_replicas, _ms(self.wait_replicas_seconds))
        raw, acknowledged = await pipe.execute()
        if int(acknowledged) < self.wait_replicas:
            raise QueueUnavailable(
                f"{acknowledged} of {self.wait_replicas} replicas confirmed the write in "
                f"{self.wait_replicas_seconds:g} s")
        return raw

    def _area(self, state: EventState) -> str:
        k = self.keys
        return {EventState.QUEUED: k.queue, EventState.PROCESSING: k.processing,
                EventState.RETRY_WAIT: k.retry_wait}[state]

    def _marker_ms(self) -> int:
        return _ms(self.operation_marker_seconds)

    def _retention_args(self) -> list[int]:
        return [self.retention.max_events, self.retention.max_age_ms]

    @_translate_errors
    async def migrate_legacy_keys(self) -> int:
        """Move a queue kept under the key names of earlier versions (before the hash tag) to
        this queue's names, and the history list of earlier versions into finished records;
        returns how many keys and history entries moved (see :mod:`event_queue.migration`)."""
        moved = await migrate_legacy_keys(self.redis, self.keys)
        return moved + await self._migrate_history()

    async def _migrate_history(self) -> int:
        k = self.keys
        moved, left = 0, 1
        while left:
            count, _, left = await self._run(
                "migrate_history", [k.history, k.finished, k.finished_index],
                [_MIGRATE_BATCH, *self._retention_args()])
            moved += int(count)
        return moved

    # -- health of the connection ---------------------------------------------------------------

    @_translate_errors
    async def ping(self) -> bool:
        """True when Redis answers."""
        return bool(await self._run("uptime", [self.keys.queue], []) is not None)

    # -- enqueue --------------------------------------------------------------------------------

    async def enqueue(self, event: NewEvent, *, idempotency_key: str | None = None,
                      added_by: str | None = None) -> EnqueueResult:
        """Add an event unless its account:command (or idempotency key) is already active.

        A duplicate is not an error: the result names the event that is already active.
        ``added_by`` names the operator who added it by hand (kept for its timeline).
        """
        (result,) = await self._enqueue([(event, idempotency_key, added_by or "")])
        return result

    async def enqueue_many(
        self, items: Sequence[tuple[NewEvent, str | None]]
    ) -> builtins.list[EnqueueResult]:
        """Enqueue several events in one atomic script call (one round trip, one AOF fsync).

        An idempotency key seen before answers with the event it made then, ``replayed`` (and
        ``duplicate``) set: a resent request, not a new event.

        With ``wait_replicas``, the call returns only once that many replicas hold the batch
        (``WAIT``), so a failover cannot lose an acknowledged event; when they do not confirm in
        ``wait_replicas_seconds``, QueueUnavailable is raised: the batch may be stored, and a
        resend is answered as a duplicate of it.
        """
        return await self._enqueue([(event, idem, "") for event, idem in items])

    @_translate_errors
    async def _enqueue(
        self, items: Sequence[tuple[NewEvent, str | None, str]]
    ) -> builtins.list[EnqueueResult]:
        if not items:
            return []
        k = self.keys
        key_list = [k.queue, k.active_events, k.dedup_index, k.events_all]
        args: list[Any] = [_ms(self.idempotency_seconds), len(items)]
        for event, idem, added_by in items:
            event_id = new_event_id()
            key_list += [
                k.event(event_id),
                k.by_account(event.account_id),
                k.by_command(event.exec_command.value),
                k.idempotency(idem or ""),
            ]
            args += [
                event_id,
                event.dedup_key,
                event.account_id,
                event.exec_command.value,
                encode_result(event.data),
                idem or "",
                added_by,
            ]
        if self.wait_replicas:
            raw = await self._run_replicated("enqueue", key_list, args)
        else:
            raw = await self._run("enqueue", key_list, args)
        return [
            EnqueueResult(event_id=str(raw[2 * i + 1]), dedup_key=event.dedup_key,
                          duplicate=int(raw[2 * i]) != 1, replayed=int(raw[2 * i]) == 2)
            for i, (event, _, _) in enumerate(items)
        ]

    # -- the processor's life cycle -------------------------------------------------------------

    def _blocking_client(self) -> AnyRedis:
        if self._blocking is None:
            if self._blocking_factory is not None:
                connection = self._blocking_factory()
                self._owned.append(connection)
                self._blocking = connection.client
            elif isinstance(self.redis, aioredis.Redis):
                pool_kwargs = dict(self.redis.connection_pool.connection_kwargs)
                pool_kwargs["socket_timeout"] = None
                pool = aioredis.ConnectionPool(
                    connection_class=self.redis.connection_pool.connection_class, **pool_kwargs
                )
                self._blocking = aioredis.Redis.from_pool(pool)
                self._owned.append(Connection(self._blocking))
            else:
                raise TypeError("a cluster client needs blocking_redis or EventQueue.from_url")
        return self._blocking

    @_translate_errors
    async def claim(self, consumer_id: str, *, timeout: float) -> Event | None:
        """Wait up to ``timeout`` seconds for a ready event and lease it to ``consumer_id``.

        BLMOVE moves the id into the processing area atomically, so the event is never held only in
        this process's memory; the lease follows in one script, under a new claim token (the
        returned event's ``claim_token``) that every later call about this claim must carry.
        Returns None on timeout.
        """
        claimed = await self._claim(consumer_id, timeout, "", 0)
        return None if claimed is None else claimed.event

    @_translate_errors
    async def claim_and_lock(
        self, consumer_id: str, *, timeout: float, lock_token: str, lock_seconds: float
    ) -> Claim | None:
        """:meth:`claim`, taking the event's account lock under ``lock_token`` in the same script
        when nobody holds it: two round trips in all (BLMOVE, then the lease). The returned
        :class:`Claim` says whether the lock was taken and when the taking call was sent."""
        if not lock_token:
            raise ValueError("claim_and_lock needs a lock token")
        return await self._claim(consumer_id, timeout, lock_token, lock_seconds)

    async def _claim(
        self, consumer_id: str, timeout: float, lock_token: str, lock_seconds: float
    ) -> Claim | None:
        blocking = self._blocking_client()
        k = self.keys
        while True:
            event_id = await asyncio.wait_for(
                # Redis takes a fractional timeout; redis-py's stub says int.
                blocking.blmove(k.queue, k.processing, timeout, "LEFT", "RIGHT"),  # type: ignore[arg-type]
                timeout + max(2.0, timeout),
            )
            if event_id is None:
                return None
            claimed = await self._lease(str(event_id), consumer_id, lock_token, lock_seconds)
            if claimed is not None:
                return claimed

    async def _lease(
        self, event_id: str, consumer_id: str, lock_token: str = "", lock_seconds: float = 0
    ) -> Claim | None:
        k = self.keys
        sent = time.monotonic()
        raw = await self._run(
            "lease",
            [k.processing, k.leases, k.event(event_id)],
            [event_id, consumer_id, _ms(self.lease_seconds), new_claim_token(), lock_token,
             _ms(lock_seconds), k.account_lock("")],
        )
        if raw[0] != "ok":
            return None
        return Claim(_decode_flat(event_id, raw[2:]), lock_token if raw[1] == "1" else "", sent)

    @_translate_errors
    async def renew_lease(
        self,
        event: Event,
        consumer_id: str,
        *,
        lock_token: str = "",
        lock_seconds: float = 0,
    ) -> LockRenewal:
        """Extend the claim's lease and, with a token, its account lock (taken again if gone).

        Returns how the lock fared (``"ok"``, ``"retaken"``); raises AccountLockConflict when
        another holder took the lock (the caller must stop its command) and LeaseLost when the
        claim no longer owns the event. ``consumer_id`` names the caller in errors.
        """
        k = self.keys
        outcome = await self._run(
            "renew",
            [k.processing, k.leases, k.event(event.event_id), k.account_lock(event.account_id)],
            [event.event_id, event.claim_token or "", _ms(self.lease_seconds), lock_token,
             _ms(lock_seconds)],
        )
        if outcome == "lost":
            raise LeaseLost(event.event_id, consumer_id)
        if outcome == "conflict":
            raise AccountLockConflict(event.account_id, event.event_id)
        return cast(LockRenewal, str(outcome))

    @_translate_errors
    async def lock_account(self, event: Event, lock_token: str, *, ttl: float) -> bool:
        """Take the account lock for this claim of ``event``, if nobody else holds it.

        Returns False while another holder has it; raises LeaseLost when the claim no longer owns
        the event and EventNotFound when it is gone (completed elsewhere, or deleted).
        """
        k = self.keys
        outcome = await self._run(
            "lock",
            [k.processing, k.event(event.event_id), k.account_lock(event.account_id)],
            [event.event_id, event.claim_token or "", lock_token, _ms(ttl)],
        )
        if outcome == "missing":
            raise EventNotFound(event.event_id)
        if outcome == "lost":
            raise LeaseLost(event.event_id, event.consumer or "")
        return bool(outcome == "ok")

    @_translate_errors
    async def complete(
        self, event: Event, consumer_id: str, result: Any = None, *, lock_token: str = ""
    ) -> str:
        """Finish an event: its finished record kept (result, timeline), its dedup key and live
        record removed, the lock released.

        Returns ``"completed"``, or ``"completed_late"`` when the claim had lost the event but
        nobody runs it (it is then taken out, since the work was done). Raises LeaseLost when
        another claim holds the account lock for it (nothing is changed), EventNotFound when it
        no longer exists, and InvalidResult, before anything is changed, when ``result`` is not
        storable as JSON (NaN, Infinity).
        """
        text = encode_result(result)
        k = self.keys
        outcome = await self._run(
            "complete",
            [k.queue, k.processing, k.leases, k.retry_wait, k.active_events,
             k.dedup_index, k.requeued, k.events_all, k.finished, k.finished_index,
             k.event(event.event_id), k.by_account(event.account_id),
             k.by_command(event.exec_command), k.account_lock(event.account_id)],
            [event.event_id, event.claim_token or "", text, lock_token, consumer_id,
             *self._retention_args()],
        )
        if outcome == "lost":
            raise LeaseLost(event.event_id, consumer_id)
        if outcome == "missing":
            raise EventNotFound(event.event_id)
        if outcome == "bad_result":
            raise InvalidResult("the result is not finite JSON")
        return str(outcome)

    @_translate_errors
    async def fail(
        self,
        event: Event,
        consumer_id: str,
        error: str,
        *,
        requeue_delay: float,
        lock_token: str = "",
    ) -> tuple[int, datetime]:
        """Record a failed attempt: ``times_queued + 1``, the error, and a wait of ``requeue_delay``.

        Returns the new ``times_queued`` and when the event becomes ready again.
        """
        k = self.keys
        times, due = await self._run(
            "fail",
            [k.processing, k.leases, k.retry_wait, k.requeued,
             k.event(event.event_id), k.account_lock(event.account_id)],
            [event.event_id, event.claim_token or "", error[:4000], int(requeue_delay * 1000),
             lock_token, error[:STEP_ERROR_CHARS]],
        )
        if int(times) < 0:
            raise LeaseLost(event.event_id, consumer_id)
        return int(times), ms_to_datetime(int(due))

    @_translate_errors
    async def release(self, event: Event, consumer_id: str, *, lock_token: str = "") -> None:
        """Hand an unfinished event back to the head of the queue, without counting a failure."""
        k = self.keys
        released = await self._run(
            "release",
            [k.queue, k.processing, k.leases, k.event(event.event_id),
             k.account_lock(event.account_id)],
            [event.event_id, event.claim_token or "", lock_token],
        )
        if not released:
            raise LeaseLost(event.event_id, consumer_id)

    @_translate_errors
    async def promote_due_retries(self, *, limit: int = 500) -> int:
        """Move retry-waiting events whose delay is over to the queue; returns how many moved."""
        k = self.keys
        due = await self._run("due_retries", [k.retry_wait], [limit])
        if not due:
            return 0
        moved = await self._run("promote", [k.queue, k.retry_wait, *map(k.event, due)], due)
        return int(moved)

    @_translate_errors
    async def reap_expired_leases(self, *, grace_seconds: float | None = None,
                                  limit: int = 500) -> builtins.list[str]:
        """Put events whose lease expired back in the queue with ``times_queued + 1``.

        Events in the processing area with no lease get a grace lease (default: one lease period)
        and are reaped on a later pass if nobody leases them. Returns the ids put back.

        Nothing is reaped during the first lease period (to the second) after Redis (re)started:
        leases are stamped with the Redis clock, which ran on while Redis was down, so every lease
        then looks expired although live processors have not yet had the chance to renew.
        """
        grace = self.lease_seconds if grace_seconds is None else grace_seconds
        if await self._recently_restarted():
            return []
        k = self.keys
        expired = await self._run("find_expired", [k.processing, k.leases], [_ms(grace), limit])
        if not expired:
            return []
        reaped = await self._run(
            "reap", [k.queue, k.processing, k.leases, k.requeued, *map(k.event, expired)], expired
        )
        return [str(i) for i in reaped]

    async def _recently_restarted(self) -> bool:
        # Redis reports whole seconds of uptime: hold off while it is surely under one lease.
        uptime = await self._run("uptime", [self.keys.queue], [])
        return float(uptime) + 1 <= self.lease_seconds

    # -- operator actions -----------------------------------------------------------------------

    @_translate_errors
    async def get(self, event_id: str) -> Event:
        """One live event; raises EventNotFound."""
        fields = await self.redis.hgetall(self.keys.event(event_id))  # type: ignore[misc]
        if not fields:
            raise EventNotFound(event_id)
        return decode_event(event_id, fields)

    @_translate_errors
    async def lookup(self, event_id: str) -> Event | FinishedEvent:
        """One event, live or finished (kept for the retention); raises EventNotFound."""
        k = self.keys
        raw = await self._run("lookup", [k.event(event_id), k.finished], [event_id])
        if raw[0] == "live":
            return _decode_flat(event_id, raw[1:])
        if raw[0] == "finished":
            return decode_finished(str(raw[1]), event_id=event_id)
        raise EventNotFound(event_id)

    @_translate_errors
    async def delete(self, event_id: str, *, by: str = "") -> Event:
        """Delete an event that is not being processed, with its dedup key; returns what it was.
        Its finished record (outcome ``deleted``, ``by`` whom) is kept for the retention.

        Raises EventNotFound, EventProcessing while a processor holds it, or EventFinished
        (with state ``completed`` or ``deleted``) when it has already finished. Safe to resend:
        the script answers a resent call of the same operation with its first outcome.
        """
        k = self.keys
        marker = k.operation(new_event_id())
        for _ in range(5):
            event = await self._live_or_finished(event_id)
            outcome = await self._run(
                "delete",
                [k.queue, k.processing, k.leases, k.retry_wait, k.active_events,
                 k.dedup_index, k.requeued, k.events_all, k.finished, k.finished_index,
                 k.event(event_id), k.by_account(event.account_id),
                 k.by_command(event.exec_command), marker],
                [event_id, event.account_id, event.exec_command, event.dedup_key,
                 self._marker_ms(), by, *self._retention_args()],
            )
            if outcome == "deleted":
                return event
            if str(outcome).startswith("finished:"):
                raise EventFinished(event_id, str(outcome).removeprefix("finished:"))
            if outcome == "processing":
                raise EventProcessing(event_id)
            if outcome == "missing":
                raise EventNotFound(event_id)
        raise EventNotFound(event_id)  # the record kept changing under us

    async def _live_or_finished(self, event_id: str) -> Event:
        """The live event; EventFinished when it has finished, EventNotFound when unknown."""
        found = await self.lookup(event_id)
        if isinstance(found, FinishedEvent):
            raise EventFinished(event_id, found.state)
        return found

    @_translate_errors
    async def retry_now(self, event_id: str, *, by: str = "") -> Event:
        """Send a retry-waiting event to the head of the queue now (times_queued unchanged);
        ``by`` (the operator's address) is kept in its timeline."""
        k = self.keys
        outcome = await self._run(
            "retry_now",
            [k.queue, k.retry_wait, k.event(event_id), k.operation(new_event_id()), k.finished],
            [event_id, self._marker_ms(), by],
        )
        if outcome == "missing":
            raise EventNotFound(event_id)
        if outcome != "ok":
            raise EventNotWaiting(event_id, str(outcome))
        return await self.get(event_id)

    @_translate_errors
    async def repair(self) -> RepairReport:
        """Find every event id anywhere (records, areas, indexes) and make the state consistent.

        Each id is repaired by one script, so live processors and brokers may keep working. This
        reads the whole state (a scan): an operator action, never a periodic job.
        """
        k = self.keys
        ids, named = await self._every_id()
        fixes: dict[str, builtins.list[str]] = {}
        for event_id in sorted(ids):
            account, command = await self._record_names(event_id)
            done = await self._run(
                "repair",
                [k.queue, k.processing, k.leases, k.retry_wait, k.active_events, k.dedup_index,
                 k.requeued, k.events_all, k.event(event_id), k.by_account(account),
                 k.by_command(command)],
                [event_id, *named.get(event_id, [])],
            )
            if done:
                fixes[event_id] = [str(f) for f in done]
        general = await self._run("repair_active", [k.active_events, k.dedup_index], [])
        return RepairReport(examined=len(ids), fixes=fixes, general=[str(f) for f in general])

    async def _every_id(self) -> tuple[set[str], dict[str, builtins.list[str]]]:
        k = self.keys
        ids: set[str] = set()
        for key in (k.queue, k.processing):
            ids.update(await self.redis.lrange(key, 0, -1))  # type: ignore[misc]
        for key in (k.retry_wait, k.events_all, k.leases, k.requeued):
            ids.update(await self.redis.zrange(key, 0, -1))
        named: dict[str, builtins.list[str]] = {}
        index = await self.redis.hgetall(k.dedup_index)  # type: ignore[misc]
        for dedup, event_id in index.items():
            named.setdefault(event_id, []).append(dedup)
        ids.update(named)
        async for key in self._scan(k.event_pattern()):
            ids.add(k.event_id_of(key))
        return ids, named

    async def _scan(self, pattern: str) -> Any:
        async for key in scan_keys(self.redis, pattern, near=self.keys.queue):
            yield key

    async def _record_names(self, event_id: str) -> tuple[str, str]:
        account, command = await self.redis.hmget(  # type: ignore[misc]
            self.keys.event(event_id), ["account_id", "exec_command"])
        return account or "", command or ""

    # -- reads ----------------------------------------------------------------------------------

    @_translate_errors
    async def list(self, **filters: Unpack[ListFilters]) -> EventPage:
        """A page of live events, oldest first, filtered by state, account and command
        (:class:`ListFilters`).

        Unfiltered, by state, or by command alone, a page costs O(log n + limit) and one round
        trip (the page and its records are read by one script). An account has at
        most one live event per command, so account filters read a handful of records. A state *and*
        command filter without an account walks the smaller of the two (callers may cap it).
        """
        return await self._list(decode_event, **filters)

    @_translate_errors
    async def listing(self, **filters: Unpack[ListFilters]) -> ListedPage:
        """:meth:`list`, each event read as a listing shows it (:class:`ListedEvent`: no data,
        result or timeline), which for a page of 100 takes a fraction of the time."""
        return await self._list(decode_listed, **filters)

    async def _list(
        self,
        decode: Callable[[str, dict[str, str]], PageEvent],
        *,
        state: EventState | None = None,
        account_id: str | None = None,
        exec_command: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[PageEvent]:
        """The page, each event read by ``decode``."""
        if account_id is not None:
            ids = await self.redis.zrange(self.keys.by_account(account_id), 0, -1)
            matching = [e for e in await self._fetch(ids, decode)
                        if _matches(e, state, exec_command)]
            return Page(matching[offset:offset + limit], len(matching), limit, offset)
        if state is not None and exec_command is not None:
            matching = await self._walk_command(decode, state, exec_command)
            return Page(matching[offset:offset + limit], len(matching), limit, offset)
        if state is not None:
            index = self._area(state)
        else:
            index = self.keys.by_command(exec_command) if exec_command else self.keys.events_all
        raw = await self._run("page_records", [index],
                              [offset, offset + limit - 1, self.keys.event(""), *_reads(decode)])
        events = [decode(str(event_id), _fields(flat))
                  for event_id, flat in zip(raw[1::2], raw[2::2], strict=True) if flat]
        return Page(events, int(raw[0]), limit, offset)

    async def _page(self, index: str, start: int, stop: int) -> tuple[int, builtins.list[str]]:
        raw = await self._run("page", [index], [start, stop])
        return int(raw[0]), [str(i) for i in raw[1:]]

    async def _walk_command(
        self, decode: Callable[[str, dict[str, str]], PageEvent], state: EventState,
        exec_command: str
    ) -> builtins.list[PageEvent]:
        """Both filters without an account: every matching event, found by walking the smaller
        of the state's area and the command's index, filtering on the other field. Cost O(min of
        the two sizes)."""
        area, by_command = self._area(state), self.keys.by_command(exec_command)
        area_size, _ = await self._page(area, 0, 0)
        command_size, _ = await self._page(by_command, 0, 0)
        index = area if area_size <= command_size else by_command
        start = 0
        matching: builtins.list[PageEvent] = []
        while True:
            _, ids = await self._page(index, start, start + _PAGE_SCAN - 1)
            if not ids:
                break
            matching += [e for e in await self._fetch(ids, decode)
                         if _matches(e, state, exec_command)]
            start += _PAGE_SCAN
        return matching

    async def _fetch(
        self, wanted: Iterable[str], decode: Callable[[str, dict[str, str]], PageEvent]
    ) -> builtins.list[PageEvent]:
        ids = builtins.list(wanted)
        events: builtins.list[PageEvent] = []
        for start in range(0, len(ids), _PAGE_SCAN):
            chunk = ids[start:start + _PAGE_SCAN]
            records = await self._run("fetch", [self.keys.event(i) for i in chunk],
                                      _reads(decode))
            for event_id, flat in zip(chunk, records, strict=True):
                if flat:
                    events.append(decode(event_id, _fields(flat)))
        return events

    @_translate_errors
    async def stats(self, *, sample_size: int = 5, alive_within: float | None = None) -> QueueStats:
        """Counts, the oldest waiting event, the most-requeued events and the O(1) consistency
        counts, without a scan, in one round trip; with ``alive_within`` (seconds), also the
        processors whose last heartbeat is at most that old (``QueueStats.processors``)."""
        k = self.keys
        (memory_used, memory_limit, queue_length, processing, retry_waiting, active, requeued,
         total, dedup_index, finished, oldest_id, sample, flat, processors, now_ms) = await self._run(
            "stats",
            [k.queue, k.processing, k.retry_wait, k.active_events, k.requeued, k.events_all,
             k.dedup_index, k.finished, k.processors, k.processor_info],
            [max(1, sample_size), k.event(""), "" if alive_within is None else _ms(alive_within)],
        )
        now = ms_to_datetime(int(now_ms))
        summaries = {flat[i]: summarize_record(*flat[i:i + 7]) for i in range(0, len(flat), 7)}
        oldest = summaries.get(oldest_id) if oldest_id else None
        age = (now - oldest.created_at).total_seconds() if oldest and oldest.created_at else None
        return QueueStats(
            queue_length=int(queue_length),
            processing=int(processing),
            retry_waiting=int(retry_waiting),
            active_events=int(active),
            events_requeued=int(requeued),
            total_events=int(total),
            oldest_event=oldest,
            oldest_event_age_seconds=max(0.0, age) if age is not None else None,
            requeued_sample=[summaries[i] for i in sample if i in summaries],
            redis_time=now,
            memory_used_bytes=int(memory_used),
            memory_limit_bytes=int(memory_limit),
            dedup_index_size=int(dedup_index),
            finished_events=int(finished),
            processors=[_processor(int(now_ms), *p) for p in processors],
        )

    @_translate_errors
    async def history(self, query: HistoryQuery | None = None) -> HistoryPage:
        """A page of finished events (completed or deleted, kept for the retention), newest
        first, filtered by account, command, outcome and finish time; raises InvalidCursor for
        a cursor this queue did not make.

        A page costs O(log n + what it reads). It is read by scripts that each read at most
        ``history_scan_budget`` index entries (so Redis never stalls long for one page), at most
        ``history_scan_calls`` of them: a page of a rare combination of filters may come back
        short, with a cursor to go on from.
        """
        q = query or HistoryQuery()
        older = q.after is None
        cursor = q.before if older else q.after
        position = decode_cursor(cursor) if cursor else ""
        found: builtins.list[tuple[str, str]] = []
        more = 1
        for _ in range(self.history_scan_calls):
            more, position, chunk = await self._history_chunk(
                q, older=older, position=position, limit=q.limit - len(found))
            found += chunk
            if not more or len(found) == q.limit:
                break
        entries = [decode_finished(text, suffix=suffix) for suffix, text in found]
        ahead = encode_cursor(position) if more else None
        behind = encode_cursor(found[0][0]) if found and cursor else None
        if older:
            return HistoryPage(entries, older=ahead, newer=behind, limit=q.limit)
        entries.reverse()
        return HistoryPage(entries, older=behind, newer=ahead, limit=q.limit)

    async def _history_chunk(
        self, q: HistoryQuery, *, older: bool, position: str, limit: int
    ) -> tuple[int, str, builtins.list[tuple[str, str]]]:
        """One script's part of a page: whether the walk stopped early, where it stopped, and
        (suffix, record) pairs."""
        k = self.keys
        raw = await self._run(
            "history", [k.finished_index, k.finished],
            ["older" if older else "newer", position, _ms_or_blank(q.since),
             _ms_or_blank(q.until), q.account_id or "",
             q.exec_command.value if q.exec_command else "", q.outcome.value if q.outcome else "",
             limit, max(self.history_scan_budget, limit + 1)],
        )
        pairs = [(str(suffix), str(text)) for suffix, text in zip(raw[2::2], raw[3::2],
                                                                   strict=True)]
        return int(raw[0]), str(raw[1]), pairs

    @_translate_errors
    async def trim_finished(self) -> int:
        """Remove finished records past the retention (the scripts that finish events trim a
        few each time; this catches up); returns how many were removed."""
        k = self.keys
        removed, step = 0, _TRIM_BUDGET
        while step == _TRIM_BUDGET:
            step = int(await self._run("trim_finished", [k.finished, k.finished_index],
                                       [*self._retention_args(), _TRIM_BUDGET]))
            removed += step
        return removed

    # -- processors and account locks -----------------------------------------------------------

    @_translate_errors
    async def heartbeat(
        self, consumer_id: str, info: dict[str, Any] | None = None, *, forget_after: float = 3600
    ) -> None:
        """Record that ``consumer_id`` is alive now."""
        await self._run(
            "heartbeat",
            [self.keys.processors, self.keys.processor_info],
            [consumer_id, encode_json(info or {}), _ms(forget_after)],
        )

    @_translate_errors
    async def forget_processor(self, consumer_id: str) -> None:
        """Remove a processor's heartbeat (on clean shutdown)."""
        await self._run("forget_processor", [self.keys.processors, self.keys.processor_info],
                        [consumer_id])

    @_translate_errors
    async def alive_processors(self, *, within: float) -> builtins.list[ProcessorInfo]:
        """Processors whose last heartbeat is at most ``within`` seconds old."""
        raw = await self._run("alive", [self.keys.processors, self.keys.processor_info],
                              [_ms(within)])
        now = int(raw[0])
        return [_processor(now, *processor) for processor in raw[1:]]

    @_translate_errors
    async def acquire_account_lock(self, account_id: str, token: str, *, ttl: float) -> bool:
        """Take the account's lock for ``ttl`` seconds if nobody holds it (no event involved:
        the processor uses :meth:`lock_account`, which checks its claim too)."""
        return bool(await self.redis.set(self.keys.account_lock(account_id), token, nx=True,
                                         px=_ms(ttl)))

    @_translate_errors
    async def release_account_lock(self, account_id: str, token: str) -> bool:
        """Release the account's lock if ``token`` still holds it."""
        return bool(await self._run("unlock", [self.keys.account_lock(account_id)], [token]))

    @_translate_errors
    async def extend_account_lock(self, account_id: str, token: str, *, ttl: float) -> bool:
        """Extend the account's lock if ``token`` still holds it."""
        return bool(
            await self._run("extend_lock", [self.keys.account_lock(account_id)], [token, _ms(ttl)])
        )

    # -- operator audit trail -------------------------------------------------------------------

    @_translate_errors
    async def record_audit(self, entry: dict[str, Any], *, cap: int = 1000) -> None:
        """Keep an operator action in the capped audit list (newest first), once."""
        stamped = {"at": datetime.now(UTC).isoformat(), **entry}
        await self._run(
            "audit", [self.keys.audit, self.keys.operation(new_event_id())],
            [encode_json(stamped), cap, self._marker_ms()],
        )

    @_translate_errors
    async def audit_log(self, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Recent operator actions, newest first."""
        raw = await self.redis.lrange(self.keys.audit, 0, max(0, limit - 1))  # type: ignore[misc]
        return [cast(dict[str, Any], json.loads(r)) for r in raw]


def new_claim_token() -> str:
    """A token naming one claim of one event (unguessable, never reused)."""
    return uuid.uuid4().hex


def _matches(event: Event | ListedEvent, state: EventState | None,
             exec_command: str | None) -> bool:
    return (state is None or event.state is state) and (
        exec_command is None or event.exec_command == exec_command
    )


def _reads(decode: Callable[[str, dict[str, str]], Any]) -> tuple[str, ...]:
    """The record fields ``decode`` needs; () for all of them."""
    return LISTED_FIELDS if decode is decode_listed else ()


def _fields(flat: Sequence[str]) -> dict[str, str]:
    """A record read as a flat field/value list (HGETALL in a script), as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _decode_flat(event_id: str, flat: Sequence[str]) -> Event:
    """:func:`decode_event` of a record read as a flat field/value list."""
    return decode_event(event_id, _fields(flat))


def _processor(now_ms: int, consumer_id: str, last_ms: str, info: str) -> ProcessorInfo:
    return ProcessorInfo(
        consumer_id=str(consumer_id),
        last_heartbeat=ms_to_datetime(int(float(last_ms))),
        age_seconds=max(0.0, (now_ms - float(last_ms)) / 1000),
        info=json.loads(info),
    )


def _ms_or_blank(value: datetime | None) -> str:
    return "" if value is None else str(datetime_to_ms(value))
