"""Run the whole stack on this machine, without Docker, on embedded defaults.

    .venv/bin/python scripts/run_local.py          (after scripts/check has set up .venv)

Starts a real Redis server from the pip-installed binary (AOF on, data in .local/redis), the
ibkr-simulator with its demo accounts, the event-processor against it, the event-broker on :8080 and
the management-service on :8000. Secrets for this run are generated and printed once; Ctrl-C stops
everything (the processor drains as on SIGTERM).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "event-queue"))

from event_queue.redis_server import RedisServer  # noqa: E402

ACCOUNTS = ROOT / "config" / "accounts.yaml"
SIM_ACCOUNTS = ROOT / "ibkr-simulator" / "accounts.demo.yaml"
PORTS = {"broker": 8080, "management": 8000, "simulator": 4002, "simulator admin": 8081}


def start(name: str, module: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    print(f"starting {name}: python -m {module} {' '.join(args)}", flush=True)
    return subprocess.Popen([sys.executable, "-m", module, *args], env={**os.environ, **env},
                            cwd=ROOT)


def check_ports_free() -> None:
    import socket

    for name, port in PORTS.items():
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sys.exit(f"port {port} ({name}) is already in use; stop whatever holds it first")


def wait_for_port(port: int, *, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


def main() -> int:
    data_dir = ROOT / ".local" / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    token, api_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    check_ports_free()
    ib_port, admin_port = PORTS["simulator"], PORTS["simulator admin"]
    with RedisServer(appendfsync="always", data_dir=str(data_dir)) as redis:
        common = {"REDIS_URL": redis.url, "ACCOUNTS_FILE": str(ACCOUNTS)}
        children = [
            start("ibkr-simulator", "ibkr_simulator", {}, "--port", str(ib_port),
                  "--admin-port", str(admin_port), "--accounts", str(SIM_ACCOUNTS)),
        ]
        wait_for_port(ib_port)
        children += [
            start("event-processor", "event_processor",
                  {**common, "IB_HOST": "127.0.0.1", "IB_PORT": str(ib_port)}),
            start("event-broker", "event_broker", {**common, "WEBHOOK_TOKEN": token}),
            start("management-service", "management_service",
                  {**common, "MANAGEMENT_API_KEY": api_key}),
        ]
        wait_for_port(8080)
        wait_for_port(8000)
        print(f"""
Stack is up (Redis {redis.binary.version} on {redis.url}, data in {data_dir}).
  webhook:    curl -X POST localhost:8080/events -H 'Authorization: Bearer {token}' \\
                -H 'Content-Type: application/json' \\
                -d '{{"account_id": "DU1234567", "exec_command": "print-positions"}}'
  queue:      curl localhost:8000/queue/status
  health:     curl -i localhost:8000/health
  management: X-API-Key: {api_key}
  simulator:  admin HTTP on 127.0.0.1:{admin_port} (GET /state)
Ctrl-C stops everything.""", flush=True)
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(timeout=40)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
