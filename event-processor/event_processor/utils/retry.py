"""Fixed-delay retries, exactly as the plan says: no multiplier, no jitter, no cap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from event_processor.config import RetryConfig

T = TypeVar("T")

log = logging.getLogger(__name__)


async def retry_with_config(
    func: Callable[[], Awaitable[T]],
    retry_config: RetryConfig,
    operation_name: str,
    *,
    retry_on: tuple[type[Exception], ...] = (Exception,),
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """Call ``func`` up to ``max_retries + 1`` times, ``delay`` seconds apart; return its result.

    Every attempt is logged. When the last attempt fails its error is re-raised unchanged, so the
    caller fails fast and the event goes back to the queue. Errors not in ``retry_on`` (and
    cancellation) are never retried. ``on_retry(operation_name)`` is called before each retry
    (the processor counts them in its metrics).
    """
    attempts = retry_config.max_retries + 1
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            return await func()
        except retry_on as exc:
            _log_failure(operation_name, attempt, attempts, started, exc)
            if attempt == attempts:
                raise
        if on_retry is not None:
            on_retry(operation_name)
        await asyncio.sleep(retry_config.delay)
    raise AssertionError("unreachable: the loop returns or raises")


def _log_failure(
    operation_name: str, attempt: int, attempts: int, started: float, exc: Exception
) -> None:
    final = attempt == attempts
    log.log(
        logging.ERROR if final else logging.WARNING,
        "%s failed (attempt %d of %d)%s",
        operation_name,
        attempt,
        attempts,
        ", giving up" if final else "",
        extra={
            "operation": operation_name,
            "attempt": attempt,
            "attempts": attempts,
            "error": f"{type(exc).__name__}: {exc}",
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
        },
    )
