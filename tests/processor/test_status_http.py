"""The processor's own HTTP endpoint: /health/live, /health and /metrics of a real process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx

from event_queue import EventQueue, ExecCommand, NewEvent
from event_queue.redis_server import free_port
from tests.processor.harness import ProcessorProcess, wait_until, write_config


async def test_health_and_metrics_of_a_running_processor(
    redis_url: str, queue: EventQueue, tmp_path: Path
) -> None:
    port = free_port()
    process = ProcessorProcess(write_config(tmp_path, redis_url), tmp_path / "runs.jsonl",
                               tmp_path / "log.jsonl",
                               env={"PROCESSOR_HOST": "127.0.0.1", "PROCESSOR_PORT": str(port)})
    process.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            async def beating() -> bool:
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(beating, timeout=20, interval=0.1)
            await queue.enqueue(NewEvent(account_id="DU1", exec_command=ExecCommand.PRINT_EQUITY,
                                         data={"sleep": 0.5}))
            await queue.enqueue(NewEvent(account_id="DU2", exec_command=ExecCommand.REBALANCE,
                                         data={"fail_until": 1}))

            async def both_ended() -> bool:
                text = (await http.get("/metrics")).text
                return ('command="rebalance",outcome="failed"' in text
                        and 'command="print-equity",outcome="completed"' in text)

            await wait_until(both_ended, timeout=20, interval=0.1)
            health = (await http.get("/health")).json()
            live = await http.get("/health/live")
            metrics = (await http.get("/metrics")).text
            missing = await http.get("/nope")
            posted = await http.post("/metrics")
            alive = await queue.alive_processors(within=10)
        assert live.status_code == 200 and live.json() == {"status": "alive"}
        assert health["status"] == "healthy" and health["stopping"] is False
        assert health["consumer_id"] in {p.consumer_id for p in alive}
        assert 0 <= health["heartbeat_age_seconds"] < 2
        for line in ("processor_stopping 0.0", "processor_ibkr_connected 0.0",
                     'processor_events_total{command="print-equity",outcome="completed"} 1.0',
                     'processor_events_total{command="rebalance",outcome="failed"} 1.0',
                     'processor_command_duration_seconds_count{command="print-equity"} 1.0'):
            assert line in metrics, line
        assert float(_sample(metrics, "processor_leases_renewed_total")) >= 1  # 0.5 s > a third
        assert _sample(metrics, "processor_events_in_flight") in ("0.0", "1.0")
        assert "process_resident_memory_bytes" in metrics
        assert (missing.status_code, posted.status_code) == (404, 405)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"garbage\r\n\r\n")
            assert raw.recv(64).startswith(b"HTTP/1.1 400 ")
    finally:
        process.terminate()
        assert await asyncio.to_thread(process.wait, 20) == 0


def _sample(text: str, name: str) -> str:
    return next(line.split()[1] for line in text.splitlines() if line.startswith(f"{name} "))
