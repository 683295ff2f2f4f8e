"""Broker ingest benchmark: ``python bench/broker_bench.py`` from the repository root.

Measures, in one run and on the same machine, the event broker against a bare FastAPI endpoint that
validates the same body (the shared ``EventRequest``) and touches no Redis. Both are served the same
way: uvicorn, uvloop, httptools, one worker, each in its own process. The load generator is a third
process: raw asyncio HTTP/1.1 keep-alive over 64 connections, closed loop. Redis runs with
``appendfsync always``, as in production.

Every request names a distinct ``account_id:exec_command`` (from a generated accounts file), so every
broker answer should be a 202; anything else is counted and printed.

Absolute figures on a shared 2-vCPU VM swing a lot; read the ratios, and the server CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC_PATHS = [str(ROOT / "event-queue"), str(ROOT / "event-broker")]
sys.path[:0] = [p for p in SRC_PATHS if p not in sys.path]

from event_queue.redis_server import free_port  # noqa: E402 - after the path set-up
from event_queue.requests import EventRequest  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
COMMANDS = ("rebalance", "print-rebalance", "print-positions", "print-equity", "print-orders",
            "cancel-orders")
ACCOUNTS = 10_000  # x 6 commands = 60k distinct dedup keys per run
TARGET_RATIO = 0.70


# -- the bare endpoint ---------------------------------------------------------------------------

def serve_bare(port: int) -> None:
    """A bare FastAPI POST with the shared pydantic body, no auth, no Redis, same server settings."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/events", status_code=202)
    async def events(body: EventRequest) -> dict[str, Any]:
        return {"status": "queued", "event_id": "0", "times_queued": 1,
                "dedup_key": f"{body.account_id}:{body.exec_command.value}"}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "pass"}

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")


# -- the load generator --------------------------------------------------------------------------

def account_id(n: int) -> str:
    return f"BA{n:06d}"


def request_bytes(index: int, host: str) -> bytes:
    account, command = account_id(index // len(COMMANDS)), COMMANDS[index % len(COMMANDS)]
    body = json.dumps({"account_id": account, "exec_command": command,
                       "data": {"order_type": "MKT"}}).encode()
    head = (f"POST /events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def connection(
    port: int, counter: itertools.count[int], limit: int, window: tuple[float, float],
    latencies: list[float], statuses: Counter[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start, end = window
    host = f"127.0.0.1:{port}"
    while (index := next(counter)) < limit:
        payload = request_bytes(index, host)
        sent = time.perf_counter()
        if sent >= end:
            break
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        length_at = head.lower().find(b"content-length:")
        length = int(head[length_at + 15:head.index(b"\r\n", length_at)])
        await reader.readexactly(length)
        done = time.perf_counter()
        if sent >= start:
            latencies.append(done - sent)
            statuses[int(head[9:12])] += 1
    writer.close()


async def generate_load(port: int, connections: int, warmup: float, duration: float) -> dict[str, Any]:
    counter = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    start = time.perf_counter() + warmup
    window = (start, start + duration)
    await asyncio.gather(*(
        connection(port, counter, ACCOUNTS * len(COMMANDS), window, latencies, statuses)
        for _ in range(connections)
    ))
    latencies.sort()
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / duration,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def run_load(port: int, connections: int, warmup: float, duration: float) -> None:
    import uvloop

    result = uvloop.run(generate_load(port, connections, warmup, duration))
    sys.stdout.write(json.dumps(result) + "\n")


# -- orchestration -------------------------------------------------------------------------------

def write_accounts(path: Path) -> None:
    lines = ["accounts:"] + [f"  - account_id: {account_id(n)}" for n in range(ACCOUNTS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, command: list[str], env: dict[str, str], port: int,
            args: argparse.Namespace, log_path: Path) -> dict[str, Any]:
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, server)
            cpu_before = cpu_seconds(server.pid)
            load = subprocess.run(
                [sys.executable, __file__, "--load", str(port), "--connections",
                 str(args.connections), "--warmup", str(args.warmup), "--duration",
                 str(args.duration)],
                env=env, capture_output=True, text=True, check=True,
            )
            cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=30)
    result: dict[str, Any] = json.loads(load.stdout)
    total = sum(result["statuses"].values()) or 1
    result["cpu_us_per_request"] = cpu / (total * (args.warmup + args.duration) / args.duration) * 1e6
    result["name"] = name
    return result


def flush(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.config_resetstat()
    client.close()


def script_calls(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    stats = client.info("commandstats")
    client.close()
    return sum(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in ("evalsha", "eval"))


def report(bare: dict[str, Any], broker: dict[str, Any], args: argparse.Namespace) -> None:
    out = sys.stdout.write
    out(f"\n{args.connections} connections, {args.duration:.0f} s measured after "
        f"{args.warmup:.0f} s warm-up, Redis appendfsync always, {os.cpu_count()} CPUs\n\n")
    out(f"{'target':<10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}  answers\n")
    for row in (bare, broker):
        out(f"{row['name']:<10}{row['throughput']:>10.0f}{row['p50_ms']:>10.2f}"
            f"{row['p99_ms']:>10.2f}{row['cpu_us_per_request']:>12.0f}  {row['statuses']}\n")
    ratio = broker["throughput"] / bare["throughput"]
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    out(f"\nthroughput ratio broker/bare: {ratio:.2f} ({verdict} the {TARGET_RATIO:.2f} target)\n")
    out(f"p99 ratio broker/bare: {broker['p99_ms'] / bare['p99_ms']:.2f}\n")
    calls = broker.get("script_calls")
    if calls:
        enqueued = sum(broker["statuses"].values()) * (args.warmup + args.duration) / args.duration
        out(f"broker enqueue script calls: {calls} (~{enqueued / calls:.1f} events per call)\n")
    unexpected = {k: v for k, v in broker["statuses"].items() if k != "202"}
    if unexpected:
        out(f"WARNING: broker answers other than 202: {unexpected}\n")


def orchestrate(args: argparse.Namespace) -> None:
    from event_queue.redis_server import RedisServer

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(SRC_PATHS)}
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp, \
            RedisServer(appendfsync="always") as redis_server:
        accounts = Path(tmp) / "accounts.yaml"
        write_accounts(accounts)
        broker_env = {**env, "WEBHOOK_TOKEN": TOKEN, "ACCOUNTS_FILE": str(accounts),
                      "REDIS_URL": redis_server.url}
        rows: dict[str, list[dict[str, Any]]] = {"bare": [], "broker": []}
        for _ in range(args.rounds):
            port = free_port()
            rows["bare"].append(measure(
                "bare", [sys.executable, __file__, "--serve-bare", str(port)], env, port, args,
                Path(tmp) / "bare.log"))
            flush(redis_server.url)
            port = free_port()
            rows["broker"].append(measure(
                "broker", [sys.executable, "-m", "event_broker", "--host", "127.0.0.1",
                           "--port", str(port)], broker_env, port, args,
                Path(tmp) / "broker.log"))
            rows["broker"][-1]["script_calls"] = script_calls(redis_server.url)
        best = {name: max(runs, key=lambda r: r["throughput"]) for name, runs in rows.items()}
        report(best["bare"], best["broker"], args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate bare/broker runs this many times; best of each is shown")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
    elif args.load:
        run_load(args.load, args.connections, args.warmup, args.duration)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
