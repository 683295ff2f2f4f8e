"""wrk (Debian's package) as the HTTP load generator: a C event loop, so it is not the bottleneck.

:func:`run` drives one URL and returns requests per second and latency percentiles, read from a Lua
``done`` hook as JSON (not from wrk's human-readable text). :func:`webhook_script` makes every POST
name a distinct ``account_id:exec_command``, so every broker answer is a fresh enqueue.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"socket_errors":%d,"status_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""

WEBHOOK = r"""
local commands = {"rebalance", "print-rebalance", "print-positions", "print-equity",
                  "print-orders", "cancel-orders"}
local counter = -1
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer __TOKEN__"
request = function()
  counter = counter + 1
  local account = string.format("BA%06d", math.floor(counter / #commands) % __ACCOUNTS__)
  local command = commands[counter % #commands + 1]
  local body = string.format(
    '{"account_id":"%s","exec_command":"%s","data":{"order_type":"MKT"}}', account, command)
  return wrk.format(nil, "/events", nil, body)
end
"""


def available() -> bool:
    """True when wrk is installed (apt install wrk)."""
    return shutil.which("wrk") is not None


def webhook_script(token: str, accounts: int) -> str:
    """Lua for POST /events with a distinct account and command per request (one thread)."""
    return WEBHOOK.replace("__TOKEN__", token).replace("__ACCOUNTS__", str(accounts))


def run(url: str, *, connections: int, duration: float, script: str = "",
        threads: int = 1, timeout: float = 5.0) -> dict[str, Any]:
    """Load ``url`` for ``duration`` seconds; requests/s, p50/p90/p99 in ms, error counts."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        lua = Path(tmp) / "bench.lua"
        lua.write_text(script + DONE, encoding="utf-8")
        done = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
             "--timeout", f"{max(1, round(timeout))}s", "-s", str(lua), url],
            capture_output=True, text=True, timeout=duration + 60, check=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = summary["duration_us"] / 1e6
    return {
        "requests": summary["requests"], "per_second": summary["requests"] / seconds,
        "p50_ms": summary["p50_us"] / 1000, "p90_ms": summary["p90_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "errors": summary["socket_errors"] + summary["status_errors"],
        "status_errors": summary["status_errors"],
    }
