"""The async client of the queue contract: the only code that talks to Redis about queue state."""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import re
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from event_queue import keys, scripts
from event_queue.errors import (
    EventNotFound,
    EventNotWaiting,
    EventProcessing,
    LeaseLost,
    QueueUnavailable,
)
from event_queue.events import (
    Event,
    EventState,
    NewEvent,
    decode_event,
    encode_json,
    ms_to_datetime,
    new_event_id,
)
from event_queue.stats import EnqueueResult, EventPage, EventSummary, ProcessorInfo, QueueStats

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_HISTORY_LIMIT = 1000
DEFAULT_IDEMPOTENCY_SECONDS = 24 * 3600
_PAGE_SCAN = 500
_AREAS = {
    EventState.QUEUED: keys.QUEUE,
    EventState.PROCESSING: keys.PROCESSING,
    EventState.RETRY_WAIT: keys.RETRY_WAIT,
}
_LISTS = {keys.QUEUE, keys.PROCESSING}


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


class EventQueue:
    """Queue operations over one ``redis.asyncio`` client (``decode_responses=True``).

    Every multi-key change is one Lua script from :mod:`event_queue.scripts`, registered once here.
    Claims block on a second connection pool without a socket timeout, so a long BLMOVE is never cut
    short by the read timeout that keeps the other calls from hanging.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        idempotency_seconds: float = DEFAULT_IDEMPOTENCY_SECONDS,
        blocking_redis: aioredis.Redis | None = None,
    ) -> None:
        self.redis = redis
        self.lease_seconds = lease_seconds
        self.history_limit = history_limit
        self.idempotency_seconds = idempotency_seconds
        self._blocking = blocking_redis
        self._owns_blocking = False
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(scripts.source(name)) for name in scripts.ALL
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
        """Connect lazily to ``url``; every call gives up after ``timeout`` seconds.

        With ``reconnect_once``, a call on a connection the server dropped (Redis restarted) is
        retried once at once on a new connection, so the first call after a restart does not fail.
        Timeouts are never retried. Use it only where running a script twice is harmless: if the
        connection dies after a script ran, the retry runs it again.
        """
        once = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=max_connections,
            retry=once if reconnect_once else None,
            retry_on_error=[RedisConnectionError] if reconnect_once else None,
        )
        return cls(client, **options)

    async def close(self) -> None:
        """Close the connection pools this client opened."""
        if self._blocking is not None and self._owns_blocking:
            await self._blocking.aclose()
        await self.redis.aclose()

    async def _run(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._scripts[name](keys=list(keys_), args=list(args))

    # -- health of the connection ---------------------------------------------------------------

    @_translate_errors
    async def ping(self) -> bool:
        """True when Redis answers."""
        return bool(await self.redis.ping())

    # -- enqueue --------------------------------------------------------------------------------

    async def enqueue(self, event: NewEvent, *, idempotency_key: str | None = None) -> EnqueueResult:
        """Add an event unless its account:command (or idempotency key) is already active.

        A duplicate is not an error: the result names the event that is already active.
        """
        (result,) = await self.enqueue_many([(event, idempotency_key)])
        return result

    @_translate_errors
    async def enqueue_many(
        self, items: Sequence[tuple[NewEvent, str | None]]
    ) -> builtins.list[EnqueueResult]:
        """Enqueue several events in one atomic script call (one round trip, one AOF fsync)."""
        if not items:
            return []
        key_list = [keys.QUEUE, keys.ACTIVE_EVENTS, keys.DEDUP_INDEX, keys.EVENTS_ALL]
        args: list[Any] = [_ms(self.idempotency_seconds), len(items)]
        for event, idem in items:
            event_id = new_event_id()
            key_list += [
                keys.event(event_id),
                keys.by_account(event.account_id),
                keys.by_command(event.exec_command.value),
                keys.idempotency(idem or ""),
            ]
            args += [
                event_id,
                event.dedup_key,
                event.account_id,
                event.exec_command.value,
                encode_json(event.data),
                idem or "",
            ]
        raw = await self._run("enqueue", key_list, args)
        return [
            EnqueueResult(event_id=str(raw[2 * i + 1]), dedup_key=event.dedup_key,
                          duplicate=int(raw[2 * i]) == 0)
            for i, (event, _) in enumerate(items)
        ]

    # -- the processor's life cycle -------------------------------------------------------------

    def _blocking_client(self) -> aioredis.Redis:
        if self._blocking is None:
            pool_kwargs = dict(self.redis.connection_pool.connection_kwargs)
            pool_kwargs["socket_timeout"] = None
            pool = aioredis.ConnectionPool(
                connection_class=self.redis.connection_pool.connection_class, **pool_kwargs
            )
            self._blocking = aioredis.Redis.from_pool(pool)  # owns (and closes) the pool
            self._owns_blocking = True
        return self._blocking

    @_translate_errors
    async def claim(self, consumer_id: str, *, timeout: float) -> Event | None:
        """Wait up to ``timeout`` seconds for a ready event and lease it to ``consumer_id``.

        BLMOVE moves the id into the processing area atomically, so the event is never held only in
        this process's memory; the lease follows in one script. Returns None on timeout.
        """
        blocking = self._blocking_client()
        while True:
            event_id = await asyncio.wait_for(
                # Redis takes a fractional timeout; redis-py's stub says int.
                blocking.blmove(keys.QUEUE, keys.PROCESSING, timeout, "LEFT", "RIGHT"),  # type: ignore[arg-type]
                timeout + max(2.0, timeout),
            )
            if event_id is None:
                return None
            event = await self._lease(str(event_id), consumer_id)
            if event is not None:
                return event

    async def _lease(self, event_id: str, consumer_id: str) -> Event | None:
        raw = await self._run(
            "lease",
            [keys.PROCESSING, keys.LEASES, keys.event(event_id)],
            [event_id, consumer_id, _ms(self.lease_seconds)],
        )
        if raw[0] != "ok":
            return None
        fields = dict(zip(raw[1::2], raw[2::2], strict=True))
        return decode_event(event_id, fields)

    @_translate_errors
    async def renew_lease(
        self,
        event: Event,
        consumer_id: str,
        *,
        lock_token: str = "",
        lock_seconds: float = 0,
    ) -> None:
        """Extend the lease (and the account lock, if a token is given); raise LeaseLost if gone."""
        renewed = await self._run(
            "renew",
            [keys.PROCESSING, keys.LEASES, keys.event(event.event_id),
             keys.account_lock(event.account_id)],
            [event.event_id, consumer_id, _ms(self.lease_seconds), lock_token, _ms(lock_seconds)],
        )
        if not renewed:
            raise LeaseLost(event.event_id, consumer_id)

    @_translate_errors
    async def complete(
        self, event: Event, consumer_id: str, result: Any = None, *, lock_token: str = ""
    ) -> str:
        """Finish an event: history entry, dedup key and record removed, lock released.

        Returns ``"completed"``, or ``"completed_late"`` when the reaper had already put the event
        back (it is then taken out again, since the work was done). Raises LeaseLost when another
        consumer holds the event and EventNotFound when it no longer exists.
        """
        outcome = await self._run(
            "complete",
            [keys.QUEUE, keys.PROCESSING, keys.LEASES, keys.RETRY_WAIT, keys.ACTIVE_EVENTS,
             keys.DEDUP_INDEX, keys.REQUEUED, keys.EVENTS_ALL, keys.HISTORY,
             keys.event(event.event_id), keys.by_account(event.account_id),
             keys.by_command(event.exec_command), keys.account_lock(event.account_id)],
            [event.event_id, consumer_id, encode_json(result), self.history_limit, lock_token],
        )
        if outcome == "lost":
            raise LeaseLost(event.event_id, consumer_id)
        if outcome == "missing":
            raise EventNotFound(event.event_id)
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
        times, due = await self._run(
            "fail",
            [keys.PROCESSING, keys.LEASES, keys.RETRY_WAIT, keys.REQUEUED,
             keys.event(event.event_id), keys.account_lock(event.account_id)],
            [event.event_id, consumer_id, error[:4000], int(requeue_delay * 1000), lock_token],
        )
        if int(times) < 0:
            raise LeaseLost(event.event_id, consumer_id)
        return int(times), ms_to_datetime(int(due))

    @_translate_errors
    async def release(self, event: Event, consumer_id: str, *, lock_token: str = "") -> None:
        """Hand an unfinished event back to the head of the queue, without counting a failure."""
        released = await self._run(
            "release",
            [keys.QUEUE, keys.PROCESSING, keys.LEASES, keys.event(event.event_id),
             keys.account_lock(event.account_id)],
            [event.event_id, consumer_id, lock_token],
        )
        if not released:
            raise LeaseLost(event.event_id, consumer_id)

    @_translate_errors
    async def promote_due_retries(self, *, limit: int = 500) -> int:
        """Move retry-waiting events whose delay is over to the queue; returns how many moved."""
        due = await self._run("due_retries", [keys.RETRY_WAIT], [limit])
        if not due:
            return 0
        moved = await self._run(
            "promote", [keys.QUEUE, keys.RETRY_WAIT, *map(keys.event, due)], due
        )
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
        expired = await self._run(
            "find_expired", [keys.PROCESSING, keys.LEASES], [_ms(grace), limit]
        )
        if not expired:
            return []
        reaped = await self._run(
            "reap",
            [keys.QUEUE, keys.PROCESSING, keys.LEASES, keys.REQUEUED, *map(keys.event, expired)],
            expired,
        )
        return [str(i) for i in reaped]

    async def _recently_restarted(self) -> bool:
        # Redis reports whole seconds of uptime: hold off while it is surely under one lease.
        info = await self.redis.info("server")
        return float(info.get("uptime_in_seconds", 0)) + 1 <= self.lease_seconds

    # -- operator actions -----------------------------------------------------------------------

    @_translate_errors
    async def get(self, event_id: str) -> Event:
        """One live event; raises EventNotFound."""
        fields = await self.redis.hgetall(keys.event(event_id))  # type: ignore[misc]
        if not fields:
            raise EventNotFound(event_id)
        return decode_event(event_id, fields)

    @_translate_errors
    async def delete(self, event_id: str) -> Event:
        """Delete an event that is not being processed, with its dedup key; returns what it was.

        Raises EventNotFound, or EventProcessing while a processor holds it.
        """
        for _ in range(5):
            event = await self.get(event_id)
            outcome = await self._run(
                "delete",
                [keys.QUEUE, keys.PROCESSING, keys.LEASES, keys.RETRY_WAIT, keys.ACTIVE_EVENTS,
                 keys.DEDUP_INDEX, keys.REQUEUED, keys.EVENTS_ALL, keys.HISTORY,
                 keys.event(event_id), keys.by_account(event.account_id),
                 keys.by_command(event.exec_command)],
                [event_id, event.account_id, event.exec_command, self.history_limit],
            )
            if outcome == "deleted":
                return event
            if outcome == "processing":
                raise EventProcessing(event_id)
            if outcome == "missing":
                raise EventNotFound(event_id)
        raise EventNotFound(event_id)  # the record kept changing under us

    @_translate_errors
    async def retry_now(self, event_id: str) -> Event:
        """Send a retry-waiting event to the head of the queue now (times_queued unchanged)."""
        outcome = await self._run(
            "retry_now", [keys.QUEUE, keys.RETRY_WAIT, keys.event(event_id)], [event_id]
        )
        if outcome == "missing":
            raise EventNotFound(event_id)
        if outcome != "ok":
            raise EventNotWaiting(event_id, str(outcome))
        return await self.get(event_id)

    # -- reads ----------------------------------------------------------------------------------

    @_translate_errors
    async def list(
        self,
        *,
        state: EventState | None = None,
        account_id: str | None = None,
        exec_command: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> EventPage:
        """A page of live events, oldest first, filtered by state, account and command.

        Unfiltered, by state, or by command alone, a page costs O(log n + limit). An account has at
        most one live event per command, so account filters read a handful of records. A state *and*
        command filter without an account walks the smaller of the two (callers may cap it).
        """
        if account_id is not None:
            ids = await self.redis.zrange(keys.by_account(account_id), 0, -1)
            matching = [e for e in await self._fetch(ids) if _matches(e, state, exec_command)]
            return EventPage(matching[offset:offset + limit], len(matching), limit, offset)
        if state is not None and exec_command is not None:
            return await self._walk_command(state, exec_command, limit=limit, offset=offset)
        ids, total = await self._index_page(state, exec_command, limit=limit, offset=offset)
        return EventPage(await self._fetch(ids), total, limit, offset)

    async def _index_page(
        self, state: EventState | None, exec_command: str | None, *, limit: int, offset: int
    ) -> tuple[builtins.list[str], int]:
        if state is not None:
            index = _AREAS[state]
        else:
            index = keys.by_command(exec_command) if exec_command else keys.EVENTS_ALL
        pipe: Pipeline = self.redis.pipeline(transaction=True)
        if index in _LISTS:
            pipe.lrange(index, offset, offset + limit - 1)
            pipe.llen(index)
        else:
            pipe.zrange(index, offset, offset + limit - 1)
            pipe.zcard(index)
        ids, total = await pipe.execute()
        return builtins.list(ids), int(total)

    async def _walk_command(
        self, state: EventState, exec_command: str, *, limit: int, offset: int
    ) -> EventPage:
        """Both filters without an account: walk the smaller of the state's area and the
        command's index, filtering on the other field. Cost O(min of the two sizes)."""
        area = _AREAS[state]
        area_size, command_size = await self._sizes(area, keys.by_command(exec_command))
        index = area if area_size <= command_size else keys.by_command(exec_command)
        start = 0
        matching: builtins.list[Event] = []
        while True:
            ids = await self._range(index, start, start + _PAGE_SCAN - 1)
            if not ids:
                break
            matching += [e for e in await self._fetch(ids) if _matches(e, state, exec_command)]
            start += _PAGE_SCAN
        return EventPage(matching[offset:offset + limit], len(matching), limit, offset)

    async def _sizes(self, *indexes: str) -> builtins.list[int]:
        pipe: Pipeline = self.redis.pipeline(transaction=False)
        for index in indexes:
            pipe.llen(index) if index in _LISTS else pipe.zcard(index)
        return [int(n) for n in await pipe.execute()]

    async def _range(self, index: str, start: int, stop: int) -> builtins.list[str]:
        if index in _LISTS:
            return builtins.list(await self.redis.lrange(index, start, stop))  # type: ignore[misc]
        return builtins.list(await self.redis.zrange(index, start, stop))

    async def _fetch(self, wanted: Iterable[str]) -> builtins.list[Event]:
        ids = builtins.list(wanted)
        if not ids:
            return []
        pipe: Pipeline = self.redis.pipeline(transaction=False)
        for event_id in ids:
            pipe.hgetall(keys.event(event_id))
        records = await pipe.execute()
        return [decode_event(i, r) for i, r in zip(ids, records, strict=True) if r]

    @_translate_errors
    async def stats(self, *, sample_size: int = 5) -> QueueStats:
        """Counts, the oldest waiting event and the most-requeued events, without a scan."""
        raw = json.loads(
            await self._run(
                "stats",
                [keys.QUEUE, keys.PROCESSING, keys.RETRY_WAIT, keys.ACTIVE_EVENTS,
                 keys.REQUEUED, keys.EVENTS_ALL],
                [max(1, sample_size)],
            )
        )
        now = ms_to_datetime(int(raw["now_ms"]))
        wanted = [i for i in [raw["oldest_waiting"], *raw["requeued_sample"]] if i]
        summaries = {e.event_id: _summary(e) for e in await self._fetch(dict.fromkeys(wanted))}
        oldest = summaries.get(raw["oldest_waiting"]) if raw["oldest_waiting"] else None
        age = (now - oldest.created_at).total_seconds() if oldest and oldest.created_at else None
        return QueueStats(
            queue_length=int(raw["queue_length"]),
            processing=int(raw["processing"]),
            retry_waiting=int(raw["retry_waiting"]),
            active_events=int(raw["active_events"]),
            events_requeued=int(raw["requeued"]),
            total_events=int(raw["total"]),
            oldest_event=oldest,
            oldest_event_age_seconds=max(0.0, age) if age is not None else None,
            requeued_sample=[summaries[i] for i in raw["requeued_sample"] if i in summaries],
            redis_time=now,
            memory_used_bytes=int(raw["memory_used"]),
            memory_limit_bytes=int(raw["memory_limit"]),
        )

    @_translate_errors
    async def history(self, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Recently finished events (completed or deleted), newest first."""
        raw = await self.redis.lrange(keys.HISTORY, 0, max(0, limit - 1))  # type: ignore[misc]
        return [_history_entry(json.loads(r)) for r in raw]

    # -- processors and account locks -----------------------------------------------------------

    @_translate_errors
    async def heartbeat(
        self, consumer_id: str, info: dict[str, Any] | None = None, *, forget_after: float = 3600
    ) -> None:
        """Record that ``consumer_id`` is alive now."""
        await self._run(
            "heartbeat",
            [keys.PROCESSORS, keys.PROCESSOR_INFO],
            [consumer_id, encode_json(info or {}), _ms(forget_after)],
        )

    @_translate_errors
    async def forget_processor(self, consumer_id: str) -> None:
        """Remove a processor's heartbeat (on clean shutdown)."""
        pipe: Pipeline = self.redis.pipeline(transaction=True)
        pipe.zrem(keys.PROCESSORS, consumer_id)
        pipe.hdel(keys.PROCESSOR_INFO, consumer_id)
        await pipe.execute()

    @_translate_errors
    async def alive_processors(self, *, within: float) -> builtins.list[ProcessorInfo]:
        """Processors whose last heartbeat is at most ``within`` seconds old."""
        raw = await self._run("alive", [keys.PROCESSORS, keys.PROCESSOR_INFO], [_ms(within)])
        now = int(raw[0])
        return [
            ProcessorInfo(
                consumer_id=str(raw[i]),
                last_heartbeat=ms_to_datetime(int(float(raw[i + 1]))),
                age_seconds=max(0.0, (now - float(raw[i + 1])) / 1000),
                info=json.loads(raw[i + 2]),
            )
            for i in range(1, len(raw), 3)
        ]

    @_translate_errors
    async def acquire_account_lock(self, account_id: str, token: str, *, ttl: float) -> bool:
        """Take the account's lock for ``ttl`` seconds if nobody holds it."""
        return bool(await self.redis.set(keys.account_lock(account_id), token, nx=True,
                                         px=_ms(ttl)))

    @_translate_errors
    async def release_account_lock(self, account_id: str, token: str) -> bool:
        """Release the account's lock if ``token`` still holds it."""
        return bool(await self._run("unlock", [keys.account_lock(account_id)], [token]))

    @_translate_errors
    async def extend_account_lock(self, account_id: str, token: str, *, ttl: float) -> bool:
        """Extend the account's lock if ``token`` still holds it."""
        return bool(
            await self._run("extend_lock", [keys.account_lock(account_id)], [token, _ms(ttl)])
        )

    # -- operator audit trail -------------------------------------------------------------------

    @_translate_errors
    async def record_audit(self, entry: dict[str, Any], *, cap: int = 1000) -> None:
        """Keep an operator action in the capped audit list (newest first)."""
        stamped = {"at": datetime.now(UTC).isoformat(), **entry}
        pipe: Pipeline = self.redis.pipeline(transaction=True)
        pipe.lpush(keys.AUDIT, encode_json(stamped))
        pipe.ltrim(keys.AUDIT, 0, cap - 1)
        await pipe.execute()

    @_translate_errors
    async def audit_log(self, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Recent operator actions, newest first."""
        raw = await self.redis.lrange(keys.AUDIT, 0, max(0, limit - 1))  # type: ignore[misc]
        return [cast(dict[str, Any], json.loads(r)) for r in raw]


def _matches(event: Event, state: EventState | None, exec_command: str | None) -> bool:
    return (state is None or event.state is state) and (
        exec_command is None or event.exec_command == exec_command
    )


def _summary(event: Event) -> EventSummary:
    return EventSummary(
        event_id=event.event_id,
        account_id=event.account_id,
        exec_command=event.exec_command,
        times_queued=event.times_queued,
        created_at=event.created_at,
        state=event.state.value,
        last_error=event.last_error,
    )


def _history_entry(raw: dict[str, Any]) -> dict[str, Any]:
    for field in ("created_at", "finished_at"):
        if isinstance(raw.get(field), int | float):
            raw[field] = ms_to_datetime(int(raw[field])).isoformat()
    return raw
