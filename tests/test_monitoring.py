"""The shipped monitoring: Prometheus alert rules (checked and unit-tested by the real promtool)
and the Grafana dashboard, both naming only metrics the services really expose."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from event_queue.redis_server import RedisServer, free_port
from tests.test_cli import start, wait_listening

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "monitoring" / "prometheus"
DASHBOARD = ROOT / "monitoring" / "grafana" / "rebalancer.json"
OURS = ("rebalance_", "management_", "broker_", "processor_", "process_", "python_")
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                "group_right", "offset", "bool", "le"}
DURATION = re.compile(r"^\d+[smhd]$")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels removed)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?", n)}


@pytest.fixture(scope="module")
def exposed() -> set[str]:
    """Every sample name the three services' /metrics answer with, scraped for real."""
    names: set[str] = set()
    with RedisServer(appendfsync=None) as redis:
        for program in ("event-broker", "management-service", "event-processor"):
            port = free_port()
            process = start(program, port, env={"REDIS_URL": redis.url})
            try:
                wait_listening(port, process)
                base = f"http://127.0.0.1:{port}"
                if program == "event-broker":
                    httpx.post(f"{base}/events", content=b"{}")  # so an outcome has a sample
                names |= samples(httpx.get(f"{base}/metrics").text)
            finally:
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=60)
    return names


def samples(text: str) -> set[str]:
    found = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):  # a labelled metric with no sample yet is still served
            _, _, name, kind = line.split()
            found |= {name, *(name + suffix for suffix in _SUFFIXES.get(kind, ()))}
        elif line and not line.startswith("#"):
            found.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return found


def test_every_alert_is_complete_and_named_once() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) >= 8
    for rule in rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    covered = " ".join(rule["expr"] for rule in rules())
    for wanted in ("management_healthy", "rebalance_events_requeued", "rebalance_processors_alive",
                   "management_redis_up", 'check="redis:memory"', "up{"):
        assert wanted in covered, wanted


def test_alerts_and_dashboard_name_only_metrics_the_services_expose(exposed: set[str]) -> None:
    used = set().union(*(metric_names(r["expr"]) for r in rules()),
                       *(metric_names(e) for e in dashboard_exprs()))
    assert used - {"up"} <= exposed, sorted(used - exposed - {"up"})
    assert all(name == "up" or name.startswith(OURS) for name in used), used
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= exposed


def test_the_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    data = dashboard()
    assert (data["uid"], data["title"]) == ("rebalancer-overview", "Rebalancer")
    assert isinstance(data["schemaVersion"], int) and data["schemaVersion"] >= 36
    assert [i["name"] for i in data["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian package prometheus; .ci/run installs it)"
        if os.environ.get("REQUIRE_PROMTOOL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.mark.parametrize("command", [("check", "rules", "alerts.yml"),
                                     ("check", "config", "prometheus.yml"),
                                     ("test", "rules", "alerts.test.yml")])
def test_promtool_accepts_the_rules_and_their_unit_tests(command: tuple[str, ...]) -> None:
    done = subprocess.run([promtool(), *command], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr

