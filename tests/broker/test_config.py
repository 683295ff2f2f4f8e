"""Settings: validated at start-up, errors name the key and never show a secret; the process
refuses to start without authentication; the demo opt-out is loud."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from event_broker.config import SettingsError, load_settings
from event_queue.redis_server import free_port
from tests.broker.conftest import SECRET, SECRET_BYTES, TOKEN, BrokerServer, event_body

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_ENV = ("WEBHOOK_SECRET", "WEBHOOK_TOKEN", "WEBHOOK_AUTH_DISABLED", "REDIS_URL", "PORT",
                "HOST", "ACCOUNTS_FILE", "WEBHOOK_ALLOWED_IPS", "WEBHOOK_TRUSTED_PROXIES", "LOG_LEVEL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


def test_no_authentication_refuses_to_start() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(None)

    assert "WEBHOOK_SECRET" in str(caught.value)
    assert "WEBHOOK_TOKEN" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"webhook_secret": "whsec_!!!not-base64!!!"}, "WEBHOOK_SECRET"),
        ({"webhook_secret": "whsec_" + base64.b64encode(b"short").decode()}, "WEBHOOK_SECRET"),
        ({"webhook_token": "tiny-secret"}, "WEBHOOK_TOKEN"),
        ({"webhook_token": TOKEN, "webhook_allowed_ips": "10.0.0.0/8, nonsense"},
         "WEBHOOK_ALLOWED_IPS"),
        ({"webhook_token": TOKEN, "port": 0}, "PORT"),
        ({"webhook_token": TOKEN, "redis_timeout": -1}, "REDIS_TIMEOUT"),
    ],
)
def test_errors_name_the_key_and_hide_the_value(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(None, **overrides)

    message = str(caught.value)
    assert key in message
    for name in ("webhook_secret", "webhook_token"):
        value = overrides.get(name)
        if isinstance(value, str) and name.upper() == key:
            assert value.removeprefix("whsec_") not in message


def test_secrets_rotate_and_accept_the_whsec_form() -> None:
    raw = base64.b64encode(b"n" * 32).decode()
    settings = load_settings(None, webhook_secret=f"{SECRET},{raw}")

    assert settings.signing_keys == (SECRET_BYTES, b"n" * 32)
    assert SECRET not in repr(settings)


def test_yaml_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("port: 9000\nredis_timeout: 1.0\nwebhook_allowed_ips: [10.0.0.0/8]\n"
                      f"webhook_token: {TOKEN}\n", encoding="utf-8")
    monkeypatch.setenv("REDIS_TIMEOUT", "0.5")

    settings = load_settings(config, port=9100)

    assert (settings.port, settings.redis_timeout) == (9100, 0.5)
    assert [str(n) for n in settings.webhook_allowed_ips] == ["10.0.0.0/8"]


def test_unknown_yaml_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"webhook_token: {TOKEN}\nredis_ulr: redis://x\n", encoding="utf-8")

    with pytest.raises(SettingsError, match="REDIS_ULR"):
        load_settings(config)


async def test_auth_disabled_is_loud_and_accepts_anonymous_webhooks(
    start_broker: Callable[..., BrokerServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="event_broker")
    server = start_broker(webhook_token=None, webhook_secret=None, webhook_auth_disabled=True)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/events", content=event_body(),
                                   headers={"Content-Type": "application/json"})

    assert response.status_code == 202
    assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in caplog.records)


@pytest.fixture
def broker_env(accounts_file: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT / "event-queue"), str(ROOT / "event-broker")]),
               ACCOUNTS_FILE=str(accounts_file), REDIS_URL=redis_url)
    return env


def test_process_refuses_to_start_without_authentication(broker_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "event_broker"], env=broker_env,
                          capture_output=True, text=True, timeout=30)

    assert done.returncode == 2
    assert "WEBHOOK_SECRET" in done.stderr and "WEBHOOK_TOKEN" in done.stderr


def test_process_serves_with_json_logs_and_no_secret(broker_env: dict[str, str]) -> None:
    env = {**broker_env, "WEBHOOK_TOKEN": TOKEN, "WEBHOOK_SECRET": SECRET}
    status, queued, output, returncode = _serve_one_webhook(env)

    assert status == 200
    assert queued.status_code == 202
    assert '"outcome":"queued"' in output
    assert '"logger":"event_broker"' in output
    assert TOKEN not in output and SECRET not in output
    assert "Application shutdown complete" in output  # SIGTERM drains, and no line is lost
    assert returncode == 0  # a stop asked for is a clean exit, as for the other services


def test_empty_variables_count_as_unset(broker_env: dict[str, str]) -> None:
    """.env.example ships ``WEBHOOK_SECRET=`` and friends empty: a token alone must be enough."""
    empty = {"WEBHOOK_SECRET": "", "WEBHOOK_ALLOWED_IPS": "", "WEBHOOK_TRUSTED_PROXIES": "",
             "WEBHOOK_AUTH_DISABLED": "", "LOG_LEVEL": ""}
    status, queued, output, returncode = _serve_one_webhook(
        {**broker_env, **empty, "WEBHOOK_TOKEN": TOKEN})

    assert status == 200
    assert queued.status_code == 202, output
    assert returncode == 0


def _serve_one_webhook(env: dict[str, str]) -> tuple[int, httpx.Response, str, int]:
    """Start ``python -m event_broker``, send one webhook with the token, SIGTERM it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "event_broker", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        status = _wait_live(f"http://127.0.0.1:{port}")
        queued = httpx.post(f"http://127.0.0.1:{port}/events", content=event_body(),
                            headers={"Authorization": f"Bearer {TOKEN}",
                                     "Content-Type": "application/json"})
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    return status, queued, output, process.returncode


def _wait_live(url: str) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the broker process did not come up")
