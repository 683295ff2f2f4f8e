"""Schemathesis against the broker's own OpenAPI document, over real HTTP: no 5xx but the intended
503 (with Retry-After). Bounded: a few dozen generated cases per operation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.broker.conftest import TOKEN, BrokerServer

AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES_PER_OPERATION = 40


def check_no_server_error(case: Any) -> int:
    response = case.call(headers=AUTH, timeout=5)
    assert response.status_code < 500 or response.status_code == 503, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    )
    if response.status_code == 503:
        assert "retry-after" in {k.lower() for k in response.headers}
    return int(response.status_code)


def test_no_server_errors(broker: BrokerServer) -> None:
    schema = schemathesis.openapi.from_url(f"{broker.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert "POST /events" in labels

    strategies = [operation.as_strategy(generation_mode=mode)
                  for operation in operations for mode in schemathesis.GenerationMode]
    seen: Counter[int] = Counter()

    @given(case=st.one_of(*strategies))
    @settings(max_examples=EXAMPLES_PER_OPERATION * len(operations), deadline=None,
              derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        seen[check_no_server_error(case)] += 1

    run()
    assert {401, 422} <= set(seen), seen  # bodies reached validation, not only auth
