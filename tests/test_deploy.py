"""Static checks of the deployment files: docker-compose.yaml, the Dockerfiles, the lock files.

The compose stack itself is built, started and exercised by scripts/compose_check, which CI runs
after the test suite; these checks catch what it cannot see (the live profile, whose IB Gateway
image is not available here) and keep the production settings the design depends on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from event_processor.config import load_settings as load_processor_settings
from event_processor.core.event_processor import HAND_BACK_SECONDS
from event_queue.accounts import load_accounts
from event_queue.redis_server import COMPACT_HASH_VALUE_BYTES

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {
    "event-broker": "event_broker",
    "event-processor": "event_processor",
    "management-service": "management_service",
}
PROCESSORS = {"event-processor": ("live", "ib-gateway"),
              "event-processor-demo": ("demo", "ibkr-simulator")}
IMAGES = ["event-broker", "event-processor", "management-service", "ibkr-simulator"]
# Which service may see which secret.
SECRETS = {"TWS_PASSWORD": "ib-gateway", "TWS_USERID": "ib-gateway",
           "WEBHOOK_SECRET": "event-broker", "WEBHOOK_TOKEN": "event-broker",
           "MANAGEMENT_API_KEY": "management-service",
           "MANAGEMENT_READ_API_KEY": "management-service"}


def compose() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))
    return spec


def dockerfile(service: str) -> str:
    return (ROOT / service / "Dockerfile").read_text(encoding="utf-8")


def seconds(value: str) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert match and value, value
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_redis_keeps_acknowledged_events_and_has_a_memory_limit() -> None:
    command = compose()["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "always"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--maxmemory"] == "${REDIS_MAXMEMORY:-256mb}"
    # the compact event records the tests and benchmarks run with
    assert flags["--hash-max-listpack-value"] == str(COMPACT_HASH_VALUE_BYTES)
    assert compose()["services"]["redis"]["volumes"] == ["redis-data:/data"]


@pytest.mark.parametrize("service", [*sorted(SERVICES), "event-processor-demo"])
def test_every_service_is_built_from_its_dockerfile(service: str) -> None:
    spec = compose()["services"][service]
    assert (ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file()
    assert spec["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert spec["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", IMAGES)
def test_images_are_pinned_non_root_locked_and_need_no_buildkit(service: str) -> None:
    text = dockerfile(service)
    base = re.search(r"^FROM\s+(\S+)", text, re.M)
    assert base is not None and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1))
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert "# syntax=" not in text  # BuildKit would fetch a frontend image to build
    installs = re.findall(r"pip install ([^\n]*)", text)
    assert installs[0].startswith("--require-hashes -r /tmp/requirements.txt")
    assert all("--no-deps" in line for line in installs[1:])
    assert re.search(r"^HEALTHCHECK ", text, re.M), f"{service} has no HEALTHCHECK"
    for source in re.findall(r"^COPY\s+(\S+)\s", text, re.M):
        assert (ROOT / source).exists(), f"{service}/Dockerfile copies missing {source}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_image_runs_the_package(service: str) -> None:
    assert f'"-m", "{SERVICES[service]}"' in dockerfile(service)


def test_the_processor_healthcheck_is_its_heartbeat() -> None:
    assert '"python", "-m", "event_processor", "healthcheck"' in dockerfile("event-processor")


@pytest.mark.parametrize("service", ["event-broker", "management-service"])
def test_http_services_use_liveness_for_container_healthchecks(service: str) -> None:
    assert "/health/live" in dockerfile(service)


@pytest.mark.parametrize("service", sorted(compose()["services"]))
def test_every_service_has_a_healthcheck_restarts_and_a_stop_grace(service: str) -> None:
    spec = compose()["services"][service]
    if "build" in spec:
        build = spec["build"]
        text = (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).read_text("utf-8")
        assert re.search(r"^HEALTHCHECK ", text, re.M), service
    else:
        assert spec["healthcheck"]["test"], service
    assert spec["restart"] == "unless-stopped"
    assert seconds(spec["stop_grace_period"]) >= 10


def test_the_processor_gets_more_than_its_drain_before_sigkill() -> None:
    settings = load_processor_settings(ROOT / "event-processor" / "config" / "config.yaml")
    drain = settings.processing.shutdown_grace + HAND_BACK_SECONDS
    for service in PROCESSORS:
        grace = seconds(compose()["services"][service]["stop_grace_period"])
        assert grace >= drain + 10, (service, grace, drain)


@pytest.mark.parametrize("service", sorted(PROCESSORS))
def test_the_processor_stops_before_its_ibkr_endpoint(service: str) -> None:
    """Compose stops dependents first: the processor drains while IBKR still answers."""
    profile, endpoint = PROCESSORS[service]
    services = compose()["services"]
    assert services[service]["profiles"] == [profile]
    assert services[endpoint]["profiles"] == [profile]
    assert endpoint in services[service]["depends_on"]


def test_the_demo_simulator_stands_in_for_ib_gateway_on_its_paper_port() -> None:
    services = compose()["services"]
    simulator = services["ibkr-simulator"]
    assert "ib-gateway" in simulator["networks"]["default"]["aliases"]
    environment = services["event-processor-demo"]["environment"]
    assert environment["IB_HOST"] == "ib-gateway"
    assert (environment["IB_PAPER_PORT"], environment["IB_LIVE_PORT"]) == ("4004", "4003")
    text = dockerfile("ibkr-simulator")
    assert re.search(r"^EXPOSE 4004 8081$", text, re.M)
    assert "SIMULATOR_PORT=4004" in text and "command" not in simulator


def test_ib_gateway_restarts_daily_and_has_a_healthcheck() -> None:
    gateway = compose()["services"]["ib-gateway"]
    assert gateway["environment"]["AUTO_RESTART_TIME"].startswith("${IB_AUTO_RESTART_TIME:-")
    assert gateway["environment"]["TRADING_MODE"] == "${TRADING_MODE:-paper}"
    assert "/dev/tcp/127.0.0.1/" in " ".join(gateway["healthcheck"]["test"])
    assert "ports" not in gateway  # the API has no authentication: never published


def test_each_service_receives_only_its_own_secrets() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        assert "env_file" not in spec, name
        for variable in spec.get("environment", {}):
            if variable in SECRETS:
                assert SECRETS[variable] == name, f"{name} receives {variable}"


def test_management_is_published_on_loopback_and_the_broker_everywhere() -> None:
    services = compose()["services"]
    assert services["management-service"]["ports"] == ["${MANAGEMENT_PUBLISH:-127.0.0.1:8000}:8000"]
    assert services["ibkr-simulator"]["ports"] == ["${SIMULATOR_ADMIN_PUBLISH:-127.0.0.1:8081}:8081"]
    assert services["event-broker"]["ports"] == ["${BROKER_PUBLISH:-8080}:8080"]
    assert "ports" not in services["redis"]


def test_the_shipped_accounts_are_the_simulators_demo_accounts() -> None:
    accounts = {a.account_id for a in load_accounts(ROOT / "config" / "accounts.yaml").accounts}
    demo = yaml.safe_load((ROOT / "ibkr-simulator" / "accounts.demo.yaml").read_text("utf-8"))
    assert accounts == {a["id"] for a in demo["accounts"]}


def env_example() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )


def test_env_example_names_every_secret_and_holds_none() -> None:
    values = env_example()
    for secret in SECRETS:
        assert values[secret] == "", f"{secret} must be empty in .env.example"
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored


def test_env_example_names_every_variable_compose_reads() -> None:
    text = (ROOT / "docker-compose.yaml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(\w+)(?::-[^}]*)?\}", text))
    assert used <= set(env_example()), used - set(env_example())


# -- lock files --------------------------------------------------------------------------------


def pins(path: Path) -> dict[str, str]:
    """name → version of every ``name==version`` line, following ``-r`` includes."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found |= pins(path.parent / line[3:].strip())
        elif "==" in line:
            name, version = line.split(";")[0].split("==")
            found[re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-")] = \
                version.strip(" \\")
    return found


def locked(path: Path) -> dict[str, list[str]]:
    """name → every version the lock file pins (markers may pin one per platform)."""
    found: dict[str, list[str]] = {}
    for match in re.finditer(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", path.read_text("utf-8"), re.M):
        name = re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")
        found.setdefault(name, []).append(match.group(2))
    return found


@pytest.mark.parametrize("source", ["requirements-dev.in", *(f"{s}/requirements.in" for s in IMAGES)])
def test_every_lock_pins_its_inputs_with_hashes(source: str) -> None:
    path = ROOT / source
    lock = path.with_suffix(".txt")
    wanted, got = pins(path), locked(lock)
    for name, version in wanted.items():
        assert got.get(name) == [version], f"{lock.name}: {name} {got.get(name)} != {version}; " \
                                           "run scripts/lock"
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text("utf-8").split("\n", 2)[2])
    for entry in entries:
        if "==" in entry:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


@pytest.mark.parametrize("service", IMAGES)
def test_images_ship_the_versions_the_tests_run_on(service: str) -> None:
    dev = locked(ROOT / "requirements-dev.txt")
    for name, versions in locked(ROOT / service / "requirements.txt").items():
        assert dev.get(name) == versions, f"{service}: {name} {versions} vs dev {dev.get(name)}"


def test_the_processor_image_carries_both_ib_clients() -> None:
    got = locked(ROOT / "event-processor" / "requirements.txt")
    assert "ib-async" in got and "ib-insync" in got
