"""Which target weights and cash reserves a portfolio can meet: one check for every door.

The broker and the management service (through :mod:`event_queue.requests`), the accounts file, the
processor's configured strategies and its planner all call these, so an input refused at one door is
refused at every other with the same message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# A reserve of 100 % would leave nothing to invest: the largest reserve is just below it.
MAX_CASH_RESERVE_PERCENT = 100.0
# Float noise allowed when weights are summed (33.33 + 33.33 + 33.34 is 100).
WEIGHT_SUM_EPSILON = 1e-9


class InvalidTargets(ValueError):
    """Target weights or a cash reserve that no portfolio can meet; the message says why."""


def check_weights(weights: Mapping[str, float]) -> None:
    """Refuse target weights (percent per symbol) that cannot be met.

    At least one symbol, every weight finite and within 0..100, together at most 100.
    """
    if not weights:
        raise InvalidTargets("allocations is empty: list at least one symbol, or leave allocations "
                             "out to use the strategy (an empty list would sell every holding)")
    bad = sorted(s for s, w in weights.items() if not (math.isfinite(w) and 0 <= w <= 100))
    if bad:
        raise InvalidTargets(f"every allocation must be a number from 0 to 100: {', '.join(bad)}")
    total = sum(weights.values())
    if total > 100.0 + WEIGHT_SUM_EPSILON:
        raise InvalidTargets(f"allocations add up to more than 100 percent ({total:g})")


def check_cash_reserve(percent: float) -> None:
    """Refuse a cash reserve outside [0, 100): a reserve of 100 % leaves nothing to invest."""
    if not (math.isfinite(percent) and 0 <= percent < MAX_CASH_RESERVE_PERCENT):
        raise InvalidTargets(f"cash_reserve_percent must be at least 0 and below 100 ({percent:g}): "
                             "a reserve of 100 % leaves nothing to invest")
