"""GET /queue/status, GET /queue/history and GET /metrics: counts, oldest event, processors,
finished events with their results, gauges."""

from __future__ import annotations

from datetime import datetime

import httpx

from event_queue import EventQueue, ExecCommand
from tests.management.conftest import ACCOUNTS, add, claim, requeue


async def test_status_of_an_empty_queue(http: httpx.AsyncClient) -> None:
    body = (await http.get("/queue/status")).json()
    assert body["queue_length"] == body["processing"] == body["retry_waiting"] == 0
    assert body["active_events_count"] == body["events_requeued"] == 0
    assert body["oldest_event"] is None and body["oldest_event_age_seconds"] is None
    assert body["processors"] == []


async def test_status_counts_every_area_and_names_the_oldest(
    http: httpx.AsyncClient, queue: EventQueue
) -> None:
    oldest = await add(queue, ACCOUNTS[0])
    await add(queue, ACCOUNTS[1])
    await add(queue, ACCOUNTS[2])
    await add(queue, ACCOUNTS[0], ExecCommand.PRINT_EQUITY)
    await requeue(queue)  # ACCOUNTS[0] rebalance -> retry_wait, times_queued 2
    await claim(queue, "worker-2")  # ACCOUNTS[1] -> processing
    await queue.heartbeat("worker-2", {"host": "proc-a"})
    response = await http.get("/queue/status")
    assert response.status_code == 200
    body = response.json()
    assert (body["queue_length"], body["processing"], body["retry_waiting"]) == (2, 1, 1)
    assert body["active_events_count"] == 4 and body["events_requeued"] == 1
    assert body["oldest_event"]["event_id"] == oldest
    assert body["oldest_event"]["account_id"] == ACCOUNTS[0]
    assert body["oldest_event"]["exec_command"] == "rebalance"
    assert datetime.fromisoformat(body["oldest_event"]["created_at"])
    assert body["oldest_event_age_seconds"] >= 0
    (processor,) = body["processors"]
    assert processor["consumer_id"] == "worker-2" and processor["info"] == {"host": "proc-a"}
    assert datetime.fromisoformat(processor["last_heartbeat"])


async def test_history_shows_finished_events_with_their_results_newest_first(
    http: httpx.AsyncClient, admin: httpx.AsyncClient, queue: EventQueue
) -> None:
    completed = await add(queue, ACCOUNTS[0])
    await queue.complete(await claim(queue), "worker-1",
                         {"orders": [{"symbol": "SPY", "action": "BUY", "filled": 3}]})
    deleted = await add(queue, ACCOUNTS[1])
    assert (await admin.delete(f"/queue/events/{deleted}")).status_code == 200
    await add(queue, ACCOUNTS[2])  # still queued: not in the history

    body = (await http.get("/queue/history")).json()
    assert [e["event_id"] for e in body["entries"]] == [deleted, completed]
    latest, first = body["entries"]
    assert (first["outcome"], first["account_id"], first["exec_command"]) == (
        "completed", ACCOUNTS[0], "rebalance")
    assert first["result"] == {"orders": [{"symbol": "SPY", "action": "BUY", "filled": 3}]}
    assert datetime.fromisoformat(first["finished_at"])
    assert latest["outcome"] == "deleted"
    one = (await http.get("/queue/history", params={"limit": 1})).json()
    assert [e["event_id"] for e in one["entries"]] == [deleted]
    assert (await http.get("/queue/history", params={"limit": 0})).status_code == 422


async def test_metrics_report_the_same_counts(http: httpx.AsyncClient, queue: EventQueue) -> None:
    await add(queue, ACCOUNTS[0])
    await add(queue, ACCOUNTS[1])
    await requeue(queue)
    await add(queue, ACCOUNTS[2])
    await queue.complete(await claim(queue), "worker-1")
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = _samples(response.text)
    assert values["rebalance_queue_length"] == 1
    assert values["rebalance_retry_waiting"] == 1
    assert values["rebalance_events_requeued"] == 1
    assert values["rebalance_finished_events"] == 1
    assert values["management_redis_up"] == 1
    assert values["management_healthy"] == 0
    assert values["process_resident_memory_bytes"] > 0  # the standard process metrics too
    assert values["process_cpu_seconds_total"] > 0


def _samples(text: str) -> dict[str, float]:
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
