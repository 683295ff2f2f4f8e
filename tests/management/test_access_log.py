"""The access log: one structured line per request, never the query string."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from event_queue.logs import JsonFormatter

SECRET_IN_URL = "key-sent-in-the-url-by-mistake-1234"


async def test_each_request_is_one_structured_line_without_the_query(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="management_service.access")
    ok = await http.get("/queue/status", params={"api_key": SECRET_IN_URL})
    refused = await http.delete("/queue/events/some-id", params={"X-API-Key": SECRET_IN_URL})
    missing = await http.get("/no/such/route")
    health = await http.get("/health", params={"token": SECRET_IN_URL})  # served before routing

    def access_lines() -> list[dict[str, Any]]:
        return [json.loads(JsonFormatter().format(r)) for r in caplog.records
                if r.name == "management_service.access"]

    for _ in range(100):  # a line is written once the answer is sent: it may trail the client
        if len(access_lines()) >= 4:
            break
        await asyncio.sleep(0.02)
    lines = access_lines()
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/queue/status", ok.status_code),
        ("DELETE", "/queue/events/some-id", refused.status_code),
        ("GET", "/no/such/route", missing.status_code),
        ("GET", "/health", health.status_code),
    ]
    assert (ok.status_code, refused.status_code, missing.status_code, health.status_code) == (
        200, 401, 404, 200)
    assert all(line["client"] == "127.0.0.1" and line["duration_ms"] >= 0 for line in lines)
    assert SECRET_IN_URL not in caplog.text + json.dumps(lines)
