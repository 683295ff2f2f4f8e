"""Small helpers shared by the benchmarks: timing, percentiles and a table printer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable


def percentile(samples: list[float], pct: float) -> float:
    """The pct-th percentile (0-100) of samples, nearest rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def latencies(call: Callable[[], Awaitable[object]], *, repeat: int,
                    warmup: int = 20) -> list[float]:
    """Seconds taken by each of `repeat` sequential calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        await call()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def table(title: str, rows: list[tuple[str, ...]]) -> None:
    """Print rows as an aligned table under a title."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n## {title}")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
