"""Prometheus metrics, set from the same O(1) observation as ``/health`` and ``/queue/status``.

Each app has its own registry (no global state). When Redis cannot be asked, ``management_redis_up``
is 0 and the queue gauges are left out, as Prometheus exporters do, so alerts can tell "Redis down"
from "management service down" (the latter makes the scrape itself fail).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from management_service.health import Observation, Report

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_QUEUE_GAUGES = {
    "queue_length": "Events ready in rebalance_queue",
    "processing": "Events claimed by a processor",
    "retry_waiting": "Events waiting for their requeue delay",
    "active_events": "Dedup keys in active_events",
    "events_requeued": "Events with times_queued > 1",
    "total_events": "Live events",
    "oldest_event_age_seconds": "Age of the oldest event not being processed",
    "processors_alive": "Processors with a heartbeat within the health window",
    "finished_events": "Finished events whose record is kept (the history's retention)",
}


class Metrics:
    """The gauges and counters of one app, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds, ...
        PlatformCollector(registry=self.registry)  # python_info
        self.redis_up = Gauge("management_redis_up", "1 when Redis answered the last scrape",
                              registry=self.registry)
        self.healthy = Gauge("management_healthy", "1 when GET /health would answer 200",
                             registry=self.registry)
        self.checks = Gauge("management_health_check_passing",
                            "1 when the named /health check passes, 0 when it fails",
                            ["check"], registry=self.registry)
        self.mutations = Counter("management_mutations", "Operator actions by outcome",
                                 ["action", "outcome"], registry=self.registry)
        self._queue: dict[str, Gauge] = {}

    def _gauge(self, name: str) -> Gauge:
        if name not in self._queue:
            self._queue[name] = Gauge(f"rebalance_{name}", _QUEUE_GAUGES[name],
                                      registry=self.registry)
        return self._queue[name]

    def observed(self, seen: Observation, report: Report) -> None:
        """Set every gauge from one observation and the health report made from it."""
        stats = seen.stats
        values = {
            "queue_length": stats.queue_length,
            "processing": stats.processing,
            "retry_waiting": stats.retry_waiting,
            "active_events": stats.active_events,
            "events_requeued": stats.events_requeued,
            "total_events": stats.total_events,
            "oldest_event_age_seconds": stats.oldest_event_age_seconds or 0.0,
            "processors_alive": len(seen.processors),
            "finished_events": stats.finished_events,
        }
        for name, value in values.items():
            self._gauge(name).set(value)
        self.redis_up.set(1)
        self.healthy.set(1 if report.status == "healthy" else 0)
        self._set_checks(report)

    def _set_checks(self, report: Report) -> None:
        self.checks.clear()  # a check that is turned off or not computed is not reported
        for name, check in report.checks.items():
            self.checks.labels(name).set(1 if check.status == "pass" else 0)

    def unavailable(self) -> None:
        """Redis did not answer: say so and drop the queue gauges rather than report stale ones."""
        for gauge in self._queue.values():
            self.registry.unregister(gauge)
        self._queue.clear()
        self.redis_up.set(0)
        self.healthy.set(0)
        self.checks.clear()
        self.checks.labels("redis:connection").set(0)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
