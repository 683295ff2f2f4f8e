"""Configuration: the shipped file, environment overrides, and errors that name the bad key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from event_processor.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    RetryConfig,
    load_settings,
)
from event_queue import Retention
from tests.processor.harness import PYTHONPATH, ROOT


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_for(tmp_path: Path, data: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, data))
    return str(info.value)


def test_the_shipped_config_carries_exactly_the_plans_retry_block() -> None:
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert raw["ibkr"] == {"connection_retry": {"max_retries": 3, "delay": 5},
                           "order_retry": {"max_retries": 2, "delay": 1}}
    settings = load_settings(DEFAULT_CONFIG_PATH)
    assert settings.ibkr.connection_retry == RetryConfig(max_retries=3, delay=5)
    assert settings.ibkr.order_retry == RetryConfig(max_retries=2, delay=1)
    assert settings.processing.commands == "event_processor.commands.factory:create_registry"


@pytest.mark.parametrize(
    ("key", "replacement"),
    [("base_delay", "renamed to delay (fixed delay)"),
     ("backoff_multiplier", "no backoff"),
     ("jitter", "exactly delay seconds"),
     ("max_delay", "nothing to cap")],
)
def test_removed_retry_keys_are_rejected_with_what_replaces_them(
    tmp_path: Path, key: str, replacement: str
) -> None:
    message = error_for(tmp_path, {"ibkr": {"order_retry": {"max_retries": 2, key: 1}}})
    assert "ibkr.order_retry" in message
    assert key in message
    assert replacement in message


@pytest.mark.parametrize(
    ("data", "key"),
    [({"processing": {"concurrency": 0}}, "processing.concurrency"),
     ({"processing": {"requeue_delay": -1}}, "processing.requeue_delay"),
     ({"processing": {"lease_seconds": "soon"}}, "processing.lease_seconds"),
     ({"processing": {"lease_seconds": 5, "renew_interval": 6}}, "processing"),
     ({"processing": {"commands": "no colon"}}, "processing.commands"),
     ({"ibkr": {"connection_retry": {"max_retries": -1, "delay": 5}}},
      "ibkr.connection_retry.max_retries"),
     ({"ibkr": {"port": 70000}}, "ibkr.port"),
     ({"redis": {"url": "http://x"}}, "redis.url"),
     ({"processing": {"concurency": 3}}, "processing.concurency"),
     ({"history": {"max_events": 0}}, "history.max_events"),
     ({"history": {"max_age_days": 400}}, "history.max_age_days"),
     ({"healthcheck": {}}, "healthcheck")],
)
def test_bad_values_name_the_key(tmp_path: Path, data: dict[str, object], key: str) -> None:
    lines = error_for(tmp_path, data).splitlines()
    assert any(line.startswith(f"{key}: ") for line in lines), lines
    assert not any("Value error" in line for line in lines)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(path)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"redis": {"url": "redis://file:6379/0"}, "ibkr": {"port": 4001}})
    monkeypatch.setenv("REDIS_URL", "redis://env:6379/1")
    monkeypatch.setenv("IB_HOST", "gateway")
    monkeypatch.setenv("IB_PORT", "7497")
    monkeypatch.setenv("PROCESSOR_PROCESSING__REQUEUE_DELAY", "7.5")
    monkeypatch.setenv("HISTORY_MAX_EVENTS", "20000")
    monkeypatch.setenv("HISTORY_MAX_AGE_DAYS", "7")
    settings = load_settings(path)
    assert settings.redis.url == "redis://env:6379/1"
    assert (settings.ibkr.host, settings.ibkr.port) == ("gateway", 7497)
    assert settings.processing.requeue_delay == 7.5
    assert settings.history.retention == Retention(max_events=20000, max_age_seconds=7 * 86400)


@pytest.mark.parametrize(
    ("mode", "port"), [(None, 4004), ("paper", 4004), ("live", 4003)])
def test_the_port_follows_the_trading_mode_unless_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str | None, port: int
) -> None:
    if mode:
        monkeypatch.setenv("TRADING_MODE", mode)
    monkeypatch.setenv("IB_PAPER_PORT", "4004")  # as docker-compose.yaml sets them
    monkeypatch.setenv("IB_LIVE_PORT", "4003")
    monkeypatch.setenv("IB_PORT", "")  # as an .env file leaves it
    assert load_settings(write(tmp_path, {})).ibkr.port == port
    monkeypatch.setenv("IB_PORT", "7497")
    assert load_settings(write(tmp_path, {})).ibkr.port == 7497


def test_without_settings_the_gateways_own_ports() -> None:
    settings = load_settings(DEFAULT_CONFIG_PATH)
    assert (settings.ibkr.trading_mode, settings.ibkr.port) == ("paper", 4002)
    live = load_settings(DEFAULT_CONFIG_PATH, ibkr={"trading_mode": "live"})
    assert live.ibkr.port == 4001


def test_empty_variables_count_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"redis": {"url": "redis://file:6379/0"}, "ibkr": {"port": 4001}})
    for variable in ("REDIS_URL", "IB_PORT", "IB_HOST", "TRADING_MODE", "LOG_LEVEL",
                     "PROCESSOR_PROCESSING__REQUEUE_DELAY"):
        monkeypatch.setenv(variable, "")
    settings = load_settings(path)
    assert (settings.redis.url, settings.ibkr.port) == ("redis://file:6379/0", 4001)
    assert settings.processing.requeue_delay == 60


def test_a_bad_environment_value_names_the_key_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IB_PORT", "not-a-port")
    message = error_for(tmp_path, {})
    assert "ibkr.port (from environment variable IB_PORT)" in message


def test_the_config_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCESSOR_CONFIG", str(write(tmp_path, {"processing": {"concurrency": 9}})))
    assert load_settings().processing.concurrency == 9


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "event_processor", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=30, env={"PYTHONPATH": PYTHONPATH, "PATH": ""}, check=False)


def test_the_cli_refuses_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, {"ibkr": {"connection_retry": {"max_retries": 3, "base_delay": 5}}})
    done = run_cli("--config", str(path))
    assert done.returncode == 2
    assert "ibkr.connection_retry" in done.stderr
    assert "base_delay was renamed to delay (fixed delay)" in done.stderr


def test_the_cli_refuses_a_registry_that_does_not_load(tmp_path: Path) -> None:
    done = run_cli("--config", str(write(tmp_path, {"processing": {"commands": "nope.mod:x"}})))
    assert done.returncode == 2
    assert "processing.commands" in done.stderr


def test_the_cli_checks_the_shipped_config() -> None:
    done = run_cli("--check-config")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("event-processor: configuration is valid (commands: ")
