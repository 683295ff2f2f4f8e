"""``python -m event_processor healthcheck``: is a processor on this host alive and reaching Redis?

Container healthchecks run this inside the processor's container, whose host name is its own, so
"a fresh heartbeat from this host" means "this container's processor": its loop runs (heartbeats
are sent by it) and it reaches Redis (they are stored there).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from event_processor.config import Settings
from event_queue import EventQueue, QueueUnavailable

# A heartbeat counts as fresh for this many heartbeat intervals (one late beat is not a failure).
FRESH_INTERVALS = 3


@dataclass(frozen=True)
class HealthReport:
    """The verdict and the one line that explains it."""

    healthy: bool
    message: str


async def check_health(settings: Settings, *, host: str | None = None) -> HealthReport:
    """Healthy when a processor on ``host`` (default: this one) sent a heartbeat recently."""
    host = host or socket.gethostname()
    within = FRESH_INTERVALS * settings.processing.heartbeat_interval
    queue = EventQueue.from_url(settings.redis.url, timeout=min(settings.redis.timeout, 2.0),
                                key_prefix=settings.redis.key_prefix)
    try:
        alive = await queue.alive_processors(within=within)
    except QueueUnavailable as exc:
        return HealthReport(False, f"unhealthy: {exc}")
    finally:
        await queue.close()
    mine = [p for p in alive if p.info.get("host") == host]
    if not mine:
        return HealthReport(False, f"unhealthy: no heartbeat from a processor on {host} "
                                   f"in the last {within:g} s")
    freshest = min(mine, key=lambda p: p.age_seconds)
    state = "stopping" if freshest.info.get("stopping") else "running"
    return HealthReport(True, f"healthy: {freshest.consumer_id} {state}, heartbeat "
                              f"{freshest.age_seconds:.1f} s ago")
