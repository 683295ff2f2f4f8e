"""Every performance figure of the project, each against a baseline measured in the same run.

    bench/run                       # every figure, 3 rounds each
    bench/run broker management     # some of them; --rounds N; --profile broker (py-spy)

Each figure runs at least three rounds; the median of each round's value (and ratio) is printed with
one verdict line per goal: MET, or BELOW / ABOVE by how much, with the breakdown that explains it.
Results (and py-spy profiles) are written to bench/results/. The machine is shared and noisy:
ratios against a peer measured in the same round are what count, not absolute numbers.

Figures (issue 14's table):
  broker        throughput of POST /events ÷ a bare FastAPI POST with a pydantic body (wrk, 64
                connections, distinct keys, Redis appendfsync always)            goal ≥ 0.85
  pickup        enqueue → command start p99, idle processor, appendfsync always   goal ≤ 5 ms
  first_order   webhook accepted → first order at the simulator, warm IB link     goal p99 ≤ 100 ms
  management    p50 of /health, /queue/status (÷ a bare GET with one Redis call)  goal ≤ 1.1
                p50 of /queue/events?limit=100 (÷ the same peer)                  goal ≤ 1.3
                p50 with 100,000 events ÷ with 10 (100 for the listing)           goal ≤ 1.2
                breakdown: µs per request beyond the peer's in the Redis script, the
                rest of Redis's CPU and the service's CPU
  claim         Redis round trips to claim one event and take its account          goal ≤ 2
  memory        Redis bytes per queued ~300-byte event (÷ a plain list + set)      goal ≤ 615 B
  enqueue       one sequential client's enqueue rate ÷ RQ's                        goal ≥ 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PATHS = [str(ROOT / p) for p in ("event-queue", "event-broker", "event-processor",
                                 "management-service", "ibkr-simulator")] + [str(ROOT)]
sys.path[:0] = [p for p in PATHS if p not in sys.path]

import httpx  # noqa: E402
import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
import uvloop  # noqa: E402

from bench import wrk  # noqa: E402
from event_queue import EventQueue, ExecCommand, HistoryQuery, NewEvent  # noqa: E402
from event_queue.redis_server import RedisServer, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token-0123456789abcdef"
ACCOUNTS = 10_000
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(PATHS)}


@dataclass(frozen=True)
class Goal:
    """One line of issue 14's table: what is compared, which way is better, the target."""

    what: str
    key: str  # the measurement's field the target applies to
    target: float
    higher_is_better: bool
    unit: str = ""

    def verdict(self, value: float) -> str:
        met = value >= self.target if self.higher_is_better else value <= self.target
        goal = f"goal {self._sign()} {self.target:g}{self.unit}"
        if met:
            return f"MET      {self.what}: {value:.3g}{self.unit} ({goal})"
        gap = abs(value - self.target)
        word = "BELOW" if self.higher_is_better else "ABOVE"
        return f"{word}    {self.what}: {value:.3g}{self.unit}, {gap:.3g}{self.unit} short of the {goal}"

    def _sign(self) -> str:
        return "≥" if self.higher_is_better else "≤"


@dataclass
class Figure:
    """A measured figure: its rounds (dicts of numbers) and the goals read from them."""

    name: str
    goals: list[Goal]
    measure: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return float(statistics.median(float(r[key]) for r in self.rounds))


# -- processes ------------------------------------------------------------------------------------

def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def program(args: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[int]:
    """A ``python`` program listening on ``port``; yields its pid; SIGTERM at the end."""
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, *args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_listening(port, process)
        yield process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accounts_file(folder: Path, count: int = ACCOUNTS, prefix: str = "BA") -> Path:
    path = folder / "accounts.yaml"
    path.write_text("accounts:\n" + "".join(f"  - account_id: {prefix}{n:06d}\n"
                                            for n in range(count)), encoding="utf-8")
    return path


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.config_resetstat()
    client.close()


# -- broker ---------------------------------------------------------------------------------------

def loaded(url: str, pid: int, args: argparse.Namespace, script: str) -> dict[str, Any]:
    before = cpu_seconds(pid)
    result = wrk.run(url, connections=64, duration=args.duration, script=script)
    result["cpu_us_per_request"] = (cpu_seconds(pid) - before) / max(1, result["requests"]) * 1e6
    return result


async def measure_broker(args: argparse.Namespace) -> dict[str, Any]:
    script = wrk.webhook_script(TOKEN, ACCOUNTS)
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp, \
            RedisServer(appendfsync="always") as server:
        folder = Path(tmp)
        port = free_port()
        with program(["bench/peers.py", "post", "--port", str(port)], port, ENV,
                     folder / "peer.log") as pid:
            bare = loaded(f"http://127.0.0.1:{port}/events", pid, args, script)
        port = free_port()
        env = {**ENV, "WEBHOOK_TOKEN": TOKEN, "REDIS_URL": server.url,
               "ACCOUNTS_FILE": str(accounts_file(folder))}
        with program(["-m", "event_broker", "--host", "127.0.0.1", "--port", str(port)], port,
                     env, folder / "broker.log") as pid:
            profile = start_profile(pid, "broker", args)
            broker = loaded(f"http://127.0.0.1:{port}/events", pid, args, script)
            stop_profile(profile)
    return {"ratio": broker["per_second"] / bare["per_second"],
            "broker_per_second": broker["per_second"], "bare_per_second": bare["per_second"],
            "broker_cpu_us": broker["cpu_us_per_request"], "bare_cpu_us": bare["cpu_us_per_request"],
            "broker_p99_ms": broker["p99_ms"], "bare_p99_ms": bare["p99_ms"],
            "broker_errors": broker["errors"]}


# -- pickup ---------------------------------------------------------------------------------------

async def measure_pickup(args: argparse.Namespace) -> dict[str, Any]:
    from bench.processor_bench import latency, write_latency

    with tempfile.TemporaryDirectory(prefix="bench-pickup-") as tmp, \
            RedisServer(appendfsync="always") as server:
        write = await write_latency(server, samples=200)
        lat = await latency(server, Path(tmp), args.samples)
    return {"p99_ms": lat["p99_ms"], "p50_ms": lat["p50_ms"], "write_p99_ms": write["p99_ms"],
            "ratio": lat["p99_ms"] / write["p99_ms"]}


# -- first order ----------------------------------------------------------------------------------

ALLOCATIONS = ([{"symbol": "SPY", "allocation": 60}, {"symbol": "AGG", "allocation": 38}],
               [{"symbol": "SPY", "allocation": 38}, {"symbol": "AGG", "allocation": 60}])


async def measure_first_order(args: argparse.Namespace) -> dict[str, Any]:
    sim_port, admin_port, broker_port, processor_port = (free_port() for _ in range(4))
    with tempfile.TemporaryDirectory(prefix="bench-order-") as tmp, \
            RedisServer(appendfsync="always") as server:
        folder = Path(tmp)
        env = {**ENV, "REDIS_URL": server.url, "ACCOUNTS_FILE": str(ROOT / "config/accounts.yaml"),
               "WEBHOOK_TOKEN": TOKEN, "IB_HOST": "127.0.0.1", "IB_PORT": str(sim_port)}
        with program(["-m", "ibkr_simulator", "--port", str(sim_port), "--admin-port",
                      str(admin_port), "--config", "ibkr-simulator/accounts.demo.yaml"],
                     sim_port, env, folder / "sim.log"), \
                program(["-m", "event_processor", "--host", "127.0.0.1", "--port",
                         str(processor_port)], processor_port, env, folder / "proc.log"), \
                program(["-m", "event_broker", "--host", "127.0.0.1", "--port",
                         str(broker_port)], broker_port, env, folder / "broker.log"):
            waits = await first_orders(broker_port, admin_port, server.url, args.samples // 10)
    waits.sort()
    return {"p50_ms": statistics.median(waits), "p99_ms": waits[max(0, int(len(waits) * .99) - 1)],
            "samples": len(waits)}


# ib_async paces its requests at 45 per second (IB allows 50): a rebalance sends about 20 (the
# snapshot, quotes, open orders, executions, the orders), so back-to-back webhooks would measure
# that pacing. Each webhook is sent once the previous rebalance has finished and the pacing window
# has passed, as signals arrive in practice.
PACING_WINDOW = 1.1


async def first_orders(broker_port: int, admin_port: int, redis_url: str, count: int) -> list[float]:
    """Rebalance the demo account back and forth; per webhook, 202 → first order (ms)."""
    queue = EventQueue.from_url(redis_url)
    waits = []
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(count + 1):  # the first one warms the IB connection up
            body = {"account_id": "DU1234567", "exec_command": "rebalance",
                    "data": {"allocations": ALLOCATIONS[n % 2], "order_type": "MKT"}}
            answer = await http.post(f"http://127.0.0.1:{broker_port}/events", json=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
            accepted = time.time()
            event_id = answer.json()["event_id"]
            while not any(e.event_id == event_id
                          for e in (await queue.history(HistoryQuery(limit=5))).entries):
                await asyncio.sleep(0.01)
            orders = (await http.get(f"http://127.0.0.1:{admin_port}/state")).json()["orders"]
            first = min(o["received_at"] for o in orders if o["order_ref"] == event_id)
            if n:
                waits.append((first - accepted) * 1000)
            await asyncio.sleep(PACING_WINDOW)
    await queue.close()
    return waits


# -- management -----------------------------------------------------------------------------------

# Each endpoint: compared with the peer at 10 events; its O(1) check compares 100,000 events with
# this many (the listing with a full page of 100 on both sides, so the page size is the same).
ENDPOINTS = {"/health": 10, "/queue/status": 10, "/queue/events?limit=100": 100}


async def fill(url: str, count: int) -> None:
    queue = EventQueue.from_url(url, timeout=30)
    for start in range(0, count, 1000):
        await queue.enqueue_many([
            (NewEvent(account_id=f"B{i:07d}", exec_command=ExecCommand.REBALANCE), None)
            for i in range(start, min(count, start + 1000))])
    await queue.heartbeat("bench-worker")
    await queue.close()


def latency(url: str, pid: int, server: RedisServer, seconds: float) -> dict[str, float]:
    """One connection's sequential requests for ``seconds``: their p50, and what they cost in
    all: CPU of the process answering, CPU of Redis, and Redis's own time in the scripts."""
    client = redis.Redis(port=server.port)
    client.config_resetstat()
    cpu, redis_cpu = cpu_seconds(pid), cpu_seconds(server.process.pid)
    result = wrk.run(url, connections=1, duration=seconds)
    script = client.info("commandstats").get("cmdstat_evalsha", {})
    client.close()
    return {"p50_ms": float(result["p50_ms"]), "requests": float(result["requests"]),
            "cpu_s": cpu_seconds(pid) - cpu,
            "redis_cpu_s": cpu_seconds(server.process.pid) - redis_cpu,
            "script_s": float(script.get("usec", 0)) / 1e6}


def side_by_side(targets: dict[str, tuple[str, int]], server: RedisServer,
                 seconds: float) -> dict[str, dict[str, float]]:
    """Each target (url, pid) measured twice, in order then in reverse order, so that the
    machine's drift (it is shared) weighs on every target alike: per target, the mean of the two
    p50s and the costs per request (µs) of both runs together."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for order in (list(targets), list(reversed(targets))):
        for name in order:
            url, pid = targets[name]
            runs[name].append(latency(url, pid, server, seconds / 2))
    out = {}
    for name, pair in runs.items():
        count = max(1.0, sum(r["requests"] for r in pair))
        out[name] = {"p50_ms": statistics.mean(r["p50_ms"] for r in pair)} | {
            key.removesuffix("_s") + "_us": sum(r[key] for r in pair) / count * 1e6
            for key in ("cpu_s", "redis_cpu_s", "script_s")}
    return out


async def measure_management(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mgmt-") as tmp, \
            RedisServer(appendfsync=None) as server, ExitStack() as running:
        folder = Path(tmp)
        urls = {size: f"redis://127.0.0.1:{server.port}/{db}"
                for db, size in enumerate((10, 100, 100_000))}
        for size, url in urls.items():
            await fill(url, size)
        # The peer and the three services run side by side; each endpoint is measured on the
        # peer and on the services that its figures compare, in turn.
        port = free_port()
        peer = (f"http://127.0.0.1:{port}/status", running.enter_context(program(
            ["bench/peers.py", "get", "--port", str(port), "--redis-url", urls[10]], port, ENV,
            folder / "peer.log")))
        services: dict[int, tuple[str, int]] = {}
        for size, url in urls.items():
            port = free_port()
            env = {**ENV, "REDIS_URL": url, "MANAGEMENT_HEALTH__PROCESSOR_WINDOW_SECONDS": "3600"}
            services[size] = (f"http://127.0.0.1:{port}", running.enter_context(program(
                ["-m", "management_service", "--host", "127.0.0.1", "--port", str(port)], port,
                env, folder / f"mgmt-{size}.log")))
        profile = start_profile(services[10][1], "management", args)
        for path, small in ENDPOINTS.items():
            targets = {"peer": peer} | {str(size): (services[size][0] + path, services[size][1])
                                        for size in sorted({10, small, 100_000})}
            seen = side_by_side(targets, server, args.duration / 2)
            for size in {10, small, 100_000}:
                result[f"{path} {size}"] = seen[str(size)]["p50_ms"]
            result[f"{path} ÷ peer"] = seen["10"]["p50_ms"] / seen["peer"]["p50_ms"]
            result[f"{path} 100k ÷ {small}"] = (seen["100000"]["p50_ms"]
                                               / seen[str(small)]["p50_ms"])
            result[f"{path} peer p50 ms"] = seen["peer"]["p50_ms"]
            result.update(why(path, seen["10"], seen["peer"]))
        stop_profile(profile)
    return result


def why(path: str, ours: dict[str, float], peer: dict[str, float]) -> dict[str, float]:
    """Where an endpoint's request costs more than the peer's (µs per request, at 10 events):
    in Redis (the script's own time, and the rest of Redis's CPU: reading and writing the
    connection) and in the service's process (HTTP, the client, the answer)."""
    return {f"{path} µs more than peer: Redis script": ours["script_us"] - peer["script_us"],
            f"{path} µs more than peer: other Redis CPU":
                (ours["redis_cpu_us"] - ours["script_us"])
                - (peer["redis_cpu_us"] - peer["script_us"]),
            f"{path} µs more than peer: service CPU": ours["cpu_us"] - peer["cpu_us"]}


# -- claim round trips ----------------------------------------------------------------------------

async def measure_claim(args: argparse.Namespace) -> dict[str, Any]:
    from redis.asyncio.connection import Connection

    from event_processor.config import load_settings
    from event_processor.services.queue_service import QueueService

    sent = {"count": 0}
    original = Connection.send_packed_command

    async def counting(self: Connection, command: Any, check_health: bool = True) -> None:
        sent["count"] += 1
        await original(self, command, check_health)

    with RedisServer(appendfsync="always") as server:
        settings = load_settings(None, redis={"url": server.url})
        service = QueueService.from_settings(settings, "bench-consumer")
        events = 50
        for i in range(events):
            await service.queue.enqueue(NewEvent(account_id=f"C{i}",
                                                 exec_command=ExecCommand.PRINT_EQUITY))
        first = await service.claim_event(1.0)  # connections made, scripts loaded
        assert first is not None
        Connection.send_packed_command = counting  # type: ignore[method-assign,assignment]
        try:
            for _ in range(events - 1):
                claim = await service.claim_event(1.0)
                assert claim is not None
                if not claim.lock_token:  # the lock was busy: the processor asks again
                    await service.lock_account(claim.event, f"token-{claim.event.event_id}")
        finally:
            Connection.send_packed_command = original  # type: ignore[method-assign]
        await service.close()
    return {"round_trips": sent["count"] / (events - 1)}


# -- memory ---------------------------------------------------------------------------------------

def payload() -> dict[str, Any]:
    """Command data that makes a ~300-byte event (JSON of the record's fields)."""
    return {"allocations": [{"symbol": "SPY", "allocation": 60},
                            {"symbol": "AGG", "allocation": 38}],
            "cash_reserve_percent": 2.0}


async def measure_memory(args: argparse.Namespace) -> dict[str, Any]:
    count = 10_000
    with RedisServer(appendfsync=None) as server:
        client = aioredis.Redis.from_url(server.url)
        queue = EventQueue.from_url(server.url)
        await client.flushall()
        before = int((await client.info("memory"))["used_memory"])
        for start in range(0, count, 500):
            await queue.enqueue_many([
                (NewEvent(account_id=f"M{i:07d}", exec_command=ExecCommand.REBALANCE,
                          data=payload()), None) for i in range(start, start + 500)])
        ours = (int((await client.info("memory"))["used_memory"]) - before) / count
        breakdown = await memory_breakdown(client, count)
        sample = json.dumps({"event_id": "0" * 36, "account_id": "M0000000",
                             "exec_command": "rebalance", "times_queued": 1,
                             "created_at": datetime.now(UTC).isoformat(), "data": payload()})
        await client.flushall()
        before = int((await client.info("memory"))["used_memory"])
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            pipe.lpush("plain:queue", sample.replace("M0000000", f"M{i:07d}"))
            pipe.sadd("plain:active", f"M{i:07d}:rebalance")
        await pipe.execute()
        plain = (int((await client.info("memory"))["used_memory"]) - before) / count
        await queue.close()
        await client.aclose()
    return {"bytes_per_event": ours, "plain_bytes_per_event": plain, "event_json_bytes": len(sample),
            "ratio": ours / plain, **breakdown}


async def memory_breakdown(client: aioredis.Redis, count: int) -> dict[str, float]:
    """Where the bytes per event go: MEMORY USAGE of each structure, per event. The event
    records and the per-account indexes (one small key each) are measured on a sample of 200."""
    totals: dict[str, float] = {}
    sampled: dict[str, list[int]] = {}
    keys: dict[str, int] = {}
    encoding = ""
    async for raw in client.scan_iter(count=1000):
        key = raw.decode()
        rest = key.split("}", 1)[-1].lstrip(":")
        name = next((p for p in ("event:", "events:account:") if rest.startswith(p)), rest)
        if name in ("event:", "events:account:"):
            keys[name] = keys.get(name, 0) + 1
            if len(sampled.setdefault(name, [])) < 200:
                sampled[name].append(int(await client.memory_usage(key, samples=0) or 0))
                if name == "event:" and not encoding:
                    encoding = (await client.object("encoding", key)).decode()
            continue
        totals[name] = float(await client.memory_usage(key, samples=0) or 0)
    for name, sizes in sampled.items():
        totals[name + "<id>"] = statistics.mean(sizes) * keys[name]
    parts = {f"B/event {name}": size / count for name, size in sorted(totals.items(),
                                                                       key=lambda kv: -kv[1])}
    compact = encoding in ("listpack", "ziplist")
    parts[f"event records compact ({encoding}: 1 = yes)"] = float(compact)
    return parts


# -- enqueue vs RQ --------------------------------------------------------------------------------

async def measure_enqueue(args: argparse.Namespace) -> dict[str, Any]:
    from rq import Queue

    count = 3000
    result: dict[str, Any] = {}
    for fsync in ("always", None):
        with RedisServer(appendfsync=fsync) as server:
            queue = EventQueue.from_url(server.url)
            started = time.perf_counter()
            for i in range(count):
                await queue.enqueue(NewEvent(account_id=f"E{i:07d}",
                                             exec_command=ExecCommand.REBALANCE,
                                             data={"strategy": "balanced"}))
            ours = count / (time.perf_counter() - started)
            await queue.close()
            connection = redis.Redis.from_url(server.url)
            rq_queue = Queue("bench", connection=connection)
            started = time.perf_counter()
            for i in range(count):
                rq_queue.enqueue("builtins.print", f"E{i:07d}", "rebalance")
            theirs = count / (time.perf_counter() - started)
            connection.close()
            plain = redis.Redis.from_url(server.url)
            started = time.perf_counter()
            for i in range(count):  # the floor both stand on: one write that Redis fsyncs
                plain.set("floor", i)
            floor = count / (time.perf_counter() - started)
            plain.close()
        label = fsync or "no AOF"
        result[f"one SET/s ({label})"] = floor
        # The best any enqueue could do is one such write: its rate over RQ's is the ceiling.
        result[f"ceiling: one SET ÷ RQ ({label})"] = floor / theirs
        result[f"ratio ({label})"] = ours / theirs
        result[f"ours/s ({label})"] = ours
        result[f"rq/s ({label})"] = theirs
    result["ratio"] = result["ratio (always)"]
    return result


# -- profiling ------------------------------------------------------------------------------------

@dataclass
class Profile:
    process: subprocess.Popen[bytes]
    stacks: Path


def start_profile(pid: int, name: str, args: argparse.Namespace) -> Profile | None:
    """py-spy on ``pid`` while it is measured (--profile NAME); its stacks in bench/results."""
    if name not in args.profile:
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    stacks = RESULTS / f"profile-{name}-{datetime.now(UTC):%Y%m%dT%H%M%S}.txt"
    # Collapsed stacks (one line per stack and its sample count): grep-able, and any flame graph
    # tool draws them (py-spy's own SVG is the same data).
    return Profile(subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                     "--pid", str(pid), "--rate", "250", "--format", "raw",
                                     "--output", str(stacks), "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), stacks)


def stop_profile(profile: Profile | None) -> None:
    """Stop py-spy and write, beside its stacks, where the time went: each function's share of
    the busy samples (inclusive), the 60 largest."""
    if profile is None:
        return
    profile.process.send_signal(signal.SIGINT)
    profile.process.wait(timeout=60)
    if profile.stacks.exists():
        top = profile.stacks.with_name(profile.stacks.stem + "-top.txt")
        top.write_text(summarize_stacks(profile.stacks.read_text(encoding="utf-8")),
                       encoding="utf-8")
        print(f"  profile: {top.relative_to(ROOT)}")


def summarize_stacks(text: str, limit: int = 60) -> str:
    """Inclusive share of each function in py-spy's collapsed stacks (idle samples left out)."""
    shares: dict[str, int] = {}
    busy = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
                  for f in stack.split(";")]
        if frames and frames[-1].startswith(("select ", "poll ", "_run_once ")):
            continue  # waiting for I/O
        busy += int(count)
        for frame in set(frames):
            shares[frame] = shares.get(frame, 0) + int(count)
    lines = [f"{busy} busy samples; inclusive share per function"]
    for frame, n in sorted(shares.items(), key=lambda kv: -kv[1])[:limit]:
        lines.append(f"{100 * n / max(1, busy):5.1f}%  {frame}")
    return "\n".join(lines) + "\n"


# -- the table ------------------------------------------------------------------------------------

FIGURES = {
    "broker": Figure("broker", [Goal("broker throughput ÷ bare FastAPI POST", "ratio", 0.85, True)],
                     measure_broker),
    "pickup": Figure("pickup", [Goal("enqueue → command start p99", "p99_ms", 5.0, False, " ms")],
                     measure_pickup),
    "first_order": Figure("first_order", [
        Goal("webhook accepted → first order p99", "p99_ms", 100.0, False, " ms")],
        measure_first_order),
    "management": Figure("management", [
        Goal("/health p50 ÷ bare GET + one Redis call", "/health ÷ peer", 1.1, False),
        Goal("/queue/status p50 ÷ bare GET + one Redis call", "/queue/status ÷ peer", 1.1, False),
        Goal("/queue/events?limit=100 p50 ÷ bare GET", "/queue/events?limit=100 ÷ peer", 1.3,
             False),
        Goal("/health 100k ÷ 10 events", "/health 100k ÷ 10", 1.2, False),
        Goal("/queue/status 100k ÷ 10 events", "/queue/status 100k ÷ 10", 1.2, False),
        Goal("/queue/events?limit=100 100k ÷ 100 events", "/queue/events?limit=100 100k ÷ 100",
             1.2, False)], measure_management),
    "claim": Figure("claim", [Goal("Redis round trips to claim an event and lock its account",
                                   "round_trips", 2, False)], measure_claim),
    "memory": Figure("memory", [Goal("Redis bytes per queued event", "bytes_per_event", 615, False,
                                     " B")], measure_memory),
    "enqueue": Figure("enqueue", [Goal("sequential enqueue ÷ RQ (appendfsync always)", "ratio", 3,
                                       True)], measure_enqueue),
}


def report(figure: Figure) -> list[str]:
    print(f"\n## {figure.name} ({len(figure.rounds)} rounds; medians)")
    for key in figure.rounds[0]:
        values = [r[key] for r in figure.rounds if isinstance(r.get(key), int | float)]
        if values:
            print(f"  {key:<48} {statistics.median(values):>12.3f}   "
                  f"(rounds: {', '.join(f'{v:.3g}' for v in values)})")
    lines = [goal.verdict(figure.median(goal.key)) for goal in figure.goals]
    for line in lines:
        print(f"  {line}")
    return lines


async def run(args: argparse.Namespace) -> int:
    verdicts: list[str] = []
    record: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "figures": {}}
    for name in args.figures:
        figure = FIGURES[name]
        for number in range(args.rounds):
            print(f"# {name}: round {number + 1} of {args.rounds}", flush=True)
            figure.rounds.append(await figure.measure(args))
        verdicts += report(figure)
        record["figures"][name] = figure.rounds
    print("\n## verdicts")
    for line in verdicts:
        print(f"  {line}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"suite-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    record["verdicts"] = verdicts
    out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", nargs="*", metavar="FIGURE",
                        help=f"which figures (default all): {', '.join(FIGURES)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per HTTP run")
    parser.add_argument("--samples", type=int, default=300, help="latency samples per round")
    parser.add_argument("--profile", nargs="*", default=[], metavar="FIGURE",
                        help="record a py-spy flame graph of the service under load")
    args = parser.parse_args()
    args.figures = args.figures or list(FIGURES)
    unknown = [name for name in args.figures if name not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not wrk.available() and {"broker", "management"} & set(args.figures):
        parser.error("wrk is needed for the HTTP figures: apt install wrk")
    # uvloop, the event loop every service runs on: our client is measured as the services use it.
    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
