"""Static checks of the deployment files (no Docker engine runs here): docker-compose.yaml and the
Dockerfiles must point at files that exist, run what the services really are, and keep the
production settings the design depends on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from event_queue.accounts import load_accounts

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {
    "event-broker": "event_broker",
    "event-processor": "event_processor",
    "management-service": "management_service",
}


def compose() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))
    return spec


def dockerfile(service: str) -> str:
    return (ROOT / service / "Dockerfile").read_text(encoding="utf-8")


def test_redis_keeps_acknowledged_events() -> None:
    command = compose()["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "always"
    assert flags["--maxmemory-policy"] == "noeviction"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_is_built_from_its_dockerfile(service: str) -> None:
    spec = compose()["services"][service]
    assert (ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    assert spec["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert spec["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_dockerfiles_are_pinned_non_root_and_run_the_package(service: str) -> None:
    text = dockerfile(service)
    base = re.search(r"^FROM\s+(\S+)", text, re.M)
    assert base is not None and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1))
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert f'"-m", "{SERVICES[service]}"' in text
    for source in re.findall(r"^COPY\s+(\S+)\s", text, re.M):
        assert (ROOT / source).exists(), f"{service}/Dockerfile copies missing {source}"


@pytest.mark.parametrize("service", ["event-broker", "management-service"])
def test_http_services_use_liveness_for_container_healthchecks(service: str) -> None:
    assert "/health/live" in dockerfile(service)


def test_the_demo_profile_replaces_ib_gateway_under_the_same_name() -> None:
    services = compose()["services"]
    assert services["ib-gateway"]["profiles"] == ["live"]
    simulator = services["ibkr-simulator"]
    assert simulator["profiles"] == ["demo"]
    assert "ib-gateway" in simulator["networks"]["default"]["aliases"]
    assert services["event-processor"]["environment"]["IB_HOST"] == "ib-gateway"
    port = services["event-processor"]["environment"]["IB_PORT"]
    assert simulator["command"][simulator["command"].index("--port") + 1] == port
    assert (ROOT / simulator["build"]["context"] / "Dockerfile").is_file()


def test_the_shipped_accounts_are_the_simulators_demo_accounts() -> None:
    accounts = {a.account_id for a in load_accounts(ROOT / "config" / "accounts.yaml").accounts}
    demo = yaml.safe_load((ROOT / "ibkr-simulator" / "accounts.demo.yaml").read_text("utf-8"))
    assert accounts == {a["id"] for a in demo["accounts"]}


def test_env_example_names_every_secret_and_holds_none() -> None:
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    for secret in ("WEBHOOK_SECRET", "WEBHOOK_TOKEN", "MANAGEMENT_API_KEY", "TWS_PASSWORD"):
        assert values[secret] == "", f"{secret} must be empty in .env.example"
