"""Command data that no portfolio can meet, and the phrase each refusal must carry.

Every door uses this one list: the broker's webhook, the management service's manual event and the
processor's planner (for an event written into Redis behind the doors' backs), so a case refused at
one door and accepted at another fails a test.
"""

from __future__ import annotations

from typing import Any

REFUSED_DATA: list[tuple[str, dict[str, Any], str]] = [
    ("empty-allocations", {"allocations": []}, "allocations is empty"),
    ("reserve-100", {"cash_reserve_percent": 100}, "a reserve of 100 % leaves nothing to invest"),
    ("reserve-negative", {"cash_reserve_percent": -1}, "must be at least 0 and below 100"),
    ("over-100-percent", {"allocations": [{"symbol": "SPY", "allocation": 70},
                                          {"symbol": "AGG", "allocation": 40}]},
     "allocations add up to more than 100 percent"),
    ("symbol-twice", {"allocations": [{"symbol": "SPY", "allocation": 10},
                                      {"symbol": "SPY", "allocation": 10}]},
     "symbols listed twice: SPY"),
    ("weight-over-100", {"allocations": [{"symbol": "SPY", "allocation": 150}]},
     "less than or equal to 100"),
]
REFUSED_IDS = [case[0] for case in REFUSED_DATA]
REFUSED_CASES = [case[1:] for case in REFUSED_DATA]
