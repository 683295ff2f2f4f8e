"""Health of the pipeline, computed from O(1) queue statistics (never a scan of the queue).

Checks, each named ``component:measurement`` as in the IETF health-check draft:

* ``queue:requeued_events`` - the plan's rule: healthy when no event has ``times_queued > 1``
  (more precisely: when at most ``requeued_events_allowed`` have, default 0).
* ``processors:heartbeat`` - events wait (queued, processing or retry-waiting) but no processor sent
  a heartbeat within ``processor_window_seconds``: the plan's rule cannot see a dead processor.
* ``redis:connection`` - Redis answered within ``timeout_seconds``; when it did not, nothing else can
  be known and the status is ``error``.
* ``redis:memory`` - Redis uses less than ``redis_memory_percent`` of its ``maxmemory``: a full Redis
  (``noeviction``) refuses every new event, so the broker answers 503 to every webhook.
* ``queue:consistency`` - the O(1) counts agree: every live event sits in exactly one area (queued,
  processing, retry_wait) and owns one dedup key. An event in no area would never run while its
  dedup key refuses every new webhook for it; ``POST /queue/repair`` fixes what this finds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from event_queue import EventQueue, EventSummary, ProcessorInfo, QueueStats, QueueUnavailable
from management_service.config import HealthSettings

REQUEUED = "queue:requeued_events"
PROCESSORS = "processors:heartbeat"
REDIS = "redis:connection"
MEMORY = "redis:memory"
CONSISTENCY = "queue:consistency"


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome (``GET /health`` writes it as the health-check draft's object;
    :class:`management_service.schemas.CheckOut` documents it)."""

    status: Literal["pass", "fail"]
    observed_value: int | float | bool | None = None
    observed_unit: str | None = None
    output: str | None = None
    offending_events: list[EventSummary] | None = None
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """The health report: ``status`` decides the HTTP status (healthy → 200, else 503).
    :class:`management_service.schemas.HealthOut` documents its JSON."""

    status: Literal["healthy", "unhealthy", "error"]
    events_requeued: int | None  # None: unknown (Redis did not answer)
    checks: dict[str, Check]
    time: datetime


@dataclass(frozen=True)
class Observation:
    """What one look at Redis tells: the queue statistics (the live processors among them)."""

    stats: QueueStats
    latency_ms: float

    @property
    def processors(self) -> list[ProcessorInfo]:
        """The processors with a heartbeat within the window asked for."""
        return self.stats.processors

    @property
    def waiting(self) -> int:
        """Events that need a processor: ready, claimed, or waiting to be retried."""
        return self.stats.queue_length + self.stats.processing + self.stats.retry_waiting


async def observe(
    queue: EventQueue, *, window_seconds: float, sample_size: int, timeout: float
) -> Observation:
    """Read the statistics and the live processors (one script, one round trip) within
    ``timeout`` seconds.

    Raises QueueUnavailable when Redis fails or is slower than ``timeout``.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(timeout):
            stats = await queue.stats(sample_size=sample_size, alive_within=window_seconds)
    except TimeoutError as exc:
        raise QueueUnavailable(f"no answer within {timeout:g} s") from exc
    return Observation(stats, (loop.time() - started) * 1000)


async def check_health(queue: EventQueue, settings: HealthSettings) -> Report:
    """The health report; its ``status`` decides the HTTP status (healthy → 200, else 503)."""
    try:
        seen = await observe(
            queue,
            window_seconds=settings.processor_window_seconds,
            sample_size=settings.offending_events_shown,
            timeout=settings.timeout_seconds,
        )
    except QueueUnavailable as exc:
        return error_report(exc)
    return evaluate(seen, settings)


def evaluate(seen: Observation, settings: HealthSettings) -> Report:
    """Apply the checks to an observation."""
    now = seen.stats.redis_time
    checks = {
        REQUEUED: requeued_check(seen.stats, settings.requeued_events_allowed, now),
        REDIS: Check(status="pass", observed_value=round(seen.latency_ms, 2),
                     observed_unit="ms", time=now),
    }
    if settings.processor_check:
        checks[PROCESSORS] = processor_check(seen, settings.processor_window_seconds, now)
    if settings.redis_memory_percent:
        checks[MEMORY] = memory_check(seen.stats, settings.redis_memory_percent, now)
    if settings.consistency_check:
        checks[CONSISTENCY] = consistency_check(seen.stats, now)
    healthy = all(c.status == "pass" for c in checks.values())
    return Report(
        status="healthy" if healthy else "unhealthy",
        events_requeued=seen.stats.events_requeued,
        checks=checks,
        time=now,
    )


def requeued_check(stats: QueueStats, allowed: int, now: datetime) -> Check:
    """Fail when more than ``allowed`` events have been requeued; name the worst of them."""
    count = stats.events_requeued
    if count <= allowed:
        return Check(status="pass", observed_value=count, observed_unit="events", time=now)
    return Check(
        status="fail",
        observed_value=count,
        observed_unit="events",
        output=f"{count} event(s) have been requeued (times_queued > 1); "
        "see offending_events and GET /queue/events/{event_id}",
        offending_events=list(stats.requeued_sample),
        time=now,
    )


def processor_check(seen: Observation, window: float, now: datetime) -> Check:
    """Fail when events wait and no processor sent a heartbeat within ``window`` seconds."""
    alive = len(seen.processors)
    if alive or not seen.waiting:
        return Check(status="pass", observed_value=alive, observed_unit="processors", time=now)
    return Check(
        status="fail",
        observed_value=0,
        observed_unit="processors",
        output=f"{seen.waiting} event(s) wait and no processor sent a heartbeat in the last "
        f"{window:g} s: is the event-processor running?",
        time=now,
    )


def memory_check(stats: QueueStats, limit_percent: float, now: datetime) -> Check:
    """Fail when Redis is at ``limit_percent`` of its maxmemory or above."""
    used = stats.memory_used_percent
    if used is None:
        return Check(status="pass", observed_value=stats.memory_used_bytes,
                     observed_unit="bytes", output="Redis has no maxmemory", time=now)
    if used < limit_percent:
        return Check(status="pass", observed_value=round(used, 1), observed_unit="percent",
                     time=now)
    return Check(
        status="fail",
        observed_value=round(used, 1),
        observed_unit="percent",
        output=f"Redis uses {used:.0f}% of its maxmemory ({stats.memory_limit_bytes} bytes): when "
        "full it refuses new events and the broker answers 503; raise maxmemory or find what "
        "fills it",
        time=now,
    )


def consistency_check(stats: QueueStats, now: datetime) -> Check:
    """Fail when the O(1) counts show an event in no area, one placed twice, or a dedup key that
    belongs to no event."""
    problems = stats.inconsistencies
    if not problems:
        return Check(status="pass", observed_value=stats.total_events, observed_unit="events",
                     time=now)
    return Check(
        status="fail",
        observed_value=stats.placed_events - stats.total_events,
        observed_unit="events misplaced",
        output="; ".join(problems) + ": run POST /queue/repair (it puts every event back in one "
        "area and drops what belongs to no event)",
        time=now,
    )


def error_report(exc: QueueUnavailable) -> Report:
    """Redis could not be asked: status ``error``, nothing else known."""
    now = datetime.now(UTC)
    check = Check(status="fail", output=str(exc), time=now)
    return Report(status="error", events_requeued=None, checks={REDIS: check}, time=now)
