"""Schemathesis against the served OpenAPI document, over real HTTP: no unexpected 5xx anywhere,
and no mutation without the key (secured operations refuse and the queue is left as it was).

Hypothesis drives a strategy over every operation (schemathesis' pytest fixture loader does not
run on pytest 9, so the strategy is used directly); examples are bounded to keep this fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.management.conftest import ACCOUNTS, API_KEY

SECURED = {("POST", "/queue/events"), ("DELETE", "/queue/events/{event_id}"),
           ("POST", "/queue/events/{event_id}/retry"), ("GET", "/audit"),
           ("POST", "/queue/repair")}
FUZZ = settings(max_examples=12, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))  # per operation: ~100 in all


def _seed(url: str) -> None:
    with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}) as client:
        for account in ACCOUNTS:
            created = client.post("/queue/events", json={"account_id": account,
                                                         "exec": "rebalance"})
            assert created.status_code == 201


def _operations(url: str) -> list[st.SearchStrategy[Any]]:
    """One strategy per operation, valid and invalid inputs mixed."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    return [st.one_of(op.as_strategy(GenerationMode.POSITIVE),
                      op.as_strategy(GenerationMode.NEGATIVE)) for op in operations]


def _no_unexpected_5xx(case: Any, response: Any) -> None:
    expected_503 = case.path == "/health" and response.status_code == 503
    assert response.status_code < 500 or expected_503, (
        case.method, case.path, response.status_code, response.text)


def _snapshot(url: str) -> list[tuple[str, int, str]]:
    body = httpx.get(f"{url}/queue/events", params={"limit": 1000}).json()
    return sorted((e["event_id"], e["times_queued"], e["state"]) for e in body["events"])


def test_without_the_key_nothing_mutates(start_service: Callable[..., str]) -> None:
    url = start_service()
    _seed(url)
    before = _snapshot(url)
    seen: set[tuple[str, str]] = set()

    def run(case: Any) -> None:
        case.headers = {k: v for k, v in (case.headers or {}).items()
                        if k.lower() != "x-api-key"}
        response = case.call(base_url=url)
        _no_unexpected_5xx(case, response)
        operation = (case.method.upper(), case.path)
        seen.add(operation)
        if operation in SECURED:
            assert response.status_code in (400, 401, 413, 422), (operation, response.status_code)

    for cases in _operations(url):
        FUZZ(given(case=cases)(run))()
    assert _snapshot(url) == before
    assert seen >= SECURED  # every mutation was tried



def test_with_the_key_no_unexpected_5xx(start_service: Callable[..., str]) -> None:
    url = start_service()
    _seed(url)

    def run(case: Any) -> None:
        response = case.call(base_url=url, headers={"X-API-Key": API_KEY})
        _no_unexpected_5xx(case, response)

    for cases in _operations(url):
        FUZZ(given(case=cases)(run))()
    assert httpx.get(f"{url}/queue/status").status_code == 200
