"""Prometheus metrics of one broker app, in its own registry (tests build many apps)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

OUTCOMES = (
    "queued", "duplicate", "unauthorized", "forbidden", "too_large",
    "unsupported_media_type", "invalid", "unavailable", "disconnected", "error",
)
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
)


class BrokerMetrics:
    """Received webhooks by outcome, and how long answering them took."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds, ...
        PlatformCollector(registry=self.registry)  # python_info
        self.events = Counter(
            "broker_events_received",
            "Webhooks received, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "broker_request_duration_seconds",
            "Time to answer POST /events, from the first byte read to the answer",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._by_outcome = {outcome: self.events.labels(outcome) for outcome in OUTCOMES}

    def observe(self, outcome: str, seconds: float) -> None:
        """Count one answered webhook."""
        self._by_outcome[outcome].inc()
        self.latency.observe(seconds)
