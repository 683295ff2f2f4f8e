"""Run real ``python -m event_processor`` processes against a test Redis, and read what they did."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from tests.processor.doubles import RECORD_ENV

ROOT = Path(__file__).resolve().parents[2]
DOUBLES = "tests.processor.doubles:create_registry"
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("event-queue", "event-processor", "."))


# An interpreter of CPython 3.11.0-3.11.2 with the processor's requirements (scripts/check makes
# one from Debian 12's python3 when the machine has it); REQUIRE_EARLY_PYTHON=1 (CI) makes its
# absence a failure instead of a skip.
EARLY_PYTHON_ENV = "EARLY_PYTHON"
REQUIRE_EARLY_PYTHON_ENV = "REQUIRE_EARLY_PYTHON"


def early_python() -> str | None:
    """The CPython 3.11.0-3.11.2 interpreter to run processors with, if there is one."""
    return os.environ.get(EARLY_PYTHON_ENV) or None


def python_version(python: str) -> tuple[int, int, int]:
    """The (major, minor, micro) of an interpreter."""
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:3])"],
                         capture_output=True, text=True, check=True).stdout
    major, minor, micro = (int(part) for part in out.split())
    return major, minor, micro


def write_config(directory: Path, redis_url: str, **processing: Any) -> Path:
    """A config file for test processors: doubles as commands, short leases and intervals."""
    fast = {"concurrency": 2, "requeue_delay": 0.2, "lease_seconds": 1.0, "claim_timeout": 0.2,
            "lock_poll_interval": 0.02, "reap_interval": 0.25, "promote_interval": 0.1,
            "heartbeat_interval": 0.5, "shutdown_grace": 2.0, "commands": DOUBLES}
    config = {
        "redis": {"url": redis_url, "timeout": 1.0, "reconnect_delay": 0.2},
        "http": {"host": "127.0.0.1", "port": 0},  # several processes run at once
        "ibkr": {"connection_retry": {"max_retries": 3, "delay": 5},
                 "order_retry": {"max_retries": 2, "delay": 1}},
        "processing": {**fast, **processing},
    }
    path = directory / f"processor-{len(list(directory.glob('processor-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class ProcessorProcess:
    """One ``python -m event_processor`` subprocess, its log going to a file."""

    def __init__(self, config: Path, record_file: Path, log_file: Path,
                 env: dict[str, str] | None = None, python: str = sys.executable) -> None:
        self.config, self.record_file, self.log_file = config, record_file, log_file
        self.env = env or {}
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessorProcess:
        env = {**os.environ, "PYTHONPATH": PYTHONPATH, RECORD_ENV: str(self.record_file),
               "PROCESSOR_CONFIG": str(self.config), **self.env}
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", "event_processor"], cwd=ROOT, env=env,
                stdout=log, stderr=log)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_file.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"msg": raw})
        return lines


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every line the doubles recorded, in file order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def runs_by_event(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The recorded lines grouped by event id."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in records:
        grouped[line["event_id"]].append(line)
    return grouped


def interrupted_claims(
    runs: dict[str, list[dict[str, Any]]], killed: set[int],
) -> set[tuple[str, int]]:
    """(event id, times_queued) of every claim a killed process started and never finished."""
    return {(event_id, r["times_queued"]) for event_id, lines in runs.items() for r in lines
            if r["what"] == "start" and r["pid"] in killed
            and not any(e["what"] in ("end", "fail") and e["times_queued"] == r["times_queued"]
                        for e in lines)}


def not_run_again(
    runs: dict[str, list[dict[str, Any]]], interrupted: set[tuple[str, int]],
    final_times_queued: dict[str, int],
) -> set[tuple[str, int]]:
    """The interrupted claims whose event did not start again, requeued at a higher times_queued
    (``final_times_queued``: each finished event's count)."""
    return {(event_id, count) for event_id, count in interrupted
            if final_times_queued.get(event_id, 0) <= count
            or not any(r["what"] == "start" and r["times_queued"] > count for r in runs[event_id])}


def claimed_twice(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Events whose command started twice at one times_queued (two claims of one queueing)."""
    return [event_id for event_id, lines in runs.items()
            if len(starts := [r["times_queued"] for r in lines if r["what"] == "start"])
            != len(set(starts))]


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.05
) -> None:
    """Poll ``check`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
