"""Settings: YAML section + environment, validated at start-up with errors naming the bad key;
``python -m management_service`` serves on uvicorn (uvloop + httptools) or exits 2 with a message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from event_queue.redis_server import free_port
from management_service.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
SERVICE_CONFIG = ROOT / "management-service" / "config.yaml"
ENV_NAMES = ("REDIS_URL", "MANAGEMENT_API_KEY", "MANAGEMENT_READ_API_KEY", "ACCOUNTS_FILE",
             "MANAGEMENT_CONFIG", "MANAGEMENT_PORT", "MANAGEMENT_HEALTH__TIMEOUT_SECONDS",
             "HISTORY_MAX_EVENTS", "HISTORY_MAX_AGE_DAYS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray config.yaml in the working directory


def test_the_shipped_config_file_is_the_plans_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANAGEMENT_CONFIG", str(SERVICE_CONFIG))
    settings = load_settings()
    assert settings.api_key_header == "X-API-Key"
    assert settings.redis_connection == "redis://redis:6379/0"
    assert settings.api_key is None and not settings.mutations_enabled
    assert settings.health.processor_check is True


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "shared.yaml"
    config.write_text("ibkr:\n  connection_retry: {max_retries: 3, delay: 5}\n"
                      "management:\n  redis_connection: redis://file:6379/0\n  port: 9001\n"
                      "  health: {processor_window_seconds: 30}\n")
    monkeypatch.setenv("MANAGEMENT_CONFIG", str(config))
    monkeypatch.setenv("REDIS_URL", "redis://env:6379/1")
    monkeypatch.setenv("MANAGEMENT_API_KEY", "k" * 32)
    monkeypatch.setenv("MANAGEMENT_HEALTH__TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("HISTORY_MAX_AGE_DAYS", "7")
    settings = load_settings()
    assert settings.retention.max_age_seconds == 7 * 86400
    assert settings.redis_connection == "redis://env:6379/1"
    assert settings.port == 9001
    assert settings.health.processor_window_seconds == 30
    assert settings.health.timeout_seconds == 0.5
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k" * 32
    assert "k" * 32 not in repr(settings)


@pytest.mark.parametrize(
    ("yaml_body", "env", "named"),
    [
        ("management:\n  health: {processor_window_seconds: 0}\n", {},
         "health.processor_window_seconds"),
        ("management:\n  helth: {}\n", {}, "helth"),
        ("management:\n  api_key: in-the-file-is-not-allowed\n", {}, "api_key"),
        ("management:\n  port: 8000\n", {"MANAGEMENT_API_KEY": "short"}, "MANAGEMENT_API_KEY"),
        ("management:\n  port: 8000\n", {"REDIS_URL": "http://redis:6379"}, "REDIS_URL"),
        ("other: {}\n", {}, "management"),
        ("management:\n  port: 8000\n", {"HISTORY_MAX_EVENTS": "0"},
         "history_max_events \\(HISTORY_MAX_EVENTS\\)"),
        ("management:\n  history_max_age_days: 400\n", {}, "history_max_age_days"),
    ],
)
def test_bad_configuration_names_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, yaml_body: str, env: dict[str, str],
    named: str,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml_body)
    monkeypatch.setenv("MANAGEMENT_CONFIG", str(config))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_missing_named_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANAGEMENT_CONFIG", "/nonexistent/config.yaml")
    with pytest.raises(ConfigError, match="No such file or directory"):
        load_settings()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "management-service"),
                                         str(ROOT / "event-queue")])
    return env | extra


def test_main_exits_2_naming_the_bad_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "management_service"], capture_output=True, text=True,
        env=_env(MANAGEMENT_HEALTH__TIMEOUT_SECONDS="-1"), timeout=30, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "health.timeout_seconds" in result.stderr


def test_main_exits_2_on_a_bad_accounts_file(tmp_path: Path) -> None:
    bad = tmp_path / "accounts.yaml"
    bad.write_text("accounts:\n  - account_id: 'has space'\n")
    result = subprocess.run(
        [sys.executable, "-m", "management_service"], capture_output=True, text=True,
        env=_env(ACCOUNTS_FILE=str(bad)), timeout=30, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "accounts.0.account_id" in result.stderr


def test_main_serves_health_on_the_configured_port(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "management_service"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env=_env(REDIS_URL=redis_url, MANAGEMENT_PORT=str(port), MANAGEMENT_HOST="127.0.0.1"),
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                live = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        assert live.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert process.returncode in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    assert '"msg":"management service ready"' in output
    assert "Application shutdown complete" in output
