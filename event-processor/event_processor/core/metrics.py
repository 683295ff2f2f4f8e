"""The processor's Prometheus metrics, in its own registry (tests build many processors).

Counted as events happen: events by command and outcome, command durations, IBKR retries, lease
renewals and losses, commands stopped for an uncertain account lock. Read at scrape time: events
in flight and waiting for their account, whether it is stopping, whether IBKR is connected, the
age of its last heartbeat; and the standard process metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

# Outcomes of one claim of an event.
OUTCOMES = ("completed", "failed", "handed_back", "taken_over")
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class ProcessorMetrics:
    """What one processor counts, and the gauges its scrape reads."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.events = Counter(
            "processor_events", "Claims of events, by command and how they ended: completed, "
            "failed (requeued with times_queued + 1), handed_back (stop), taken_over",
            ["command", "outcome"], registry=self.registry)
        self.duration = Histogram(
            "processor_command_duration_seconds", "How long commands ran, by command",
            ["command"], buckets=_DURATION_BUCKETS, registry=self.registry)
        self.ibkr_retries = Counter(
            "processor_ibkr_retries", "IBKR connection and order retries (fixed delay)",
            ["operation"], registry=self.registry)
        self.leases_renewed = Counter(
            "processor_leases_renewed", "Lease renewals that kept an event", registry=self.registry)
        self.leases_lost = Counter(
            "processor_leases_lost", "Events whose lease was lost (taken over, or reaped)",
            registry=self.registry)
        self.commands_stopped = Counter(
            "processor_commands_stopped", "Commands stopped because the account lock was not "
            "certain any more", registry=self.registry)

    def watch(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read at each scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def ended(self, command: str, outcome: str) -> None:
        """Count one claim of an event by how it ended."""
        self.events.labels(command, outcome).inc()

    def ran(self, command: str, started: float) -> None:
        """Record a command's running time (``started`` from :func:`time.monotonic`)."""
        self.duration.labels(command).observe(time.monotonic() - started)

    def retried(self, operation: str) -> None:
        """Count one IBKR retry (``operation`` as the retry logs it, e.g. ``ibkr connect``)."""
        kind = "order" if operation.startswith("place order") else operation.removeprefix("ibkr ")
        self.ibkr_retries.labels(kind).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
