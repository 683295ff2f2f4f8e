"""The broker's settings: one class, read once at start-up from a YAML file and the environment.

Precedence, highest first: explicit overrides (the command line), environment variables (named as
the field in upper case: ``REDIS_URL``, ``WEBHOOK_SECRET`` ...), the YAML file, the defaults.
Every error names the key that is wrong and never shows a secret's value.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from event_queue.cli import ConfigProblem, clean, read_yaml
from event_queue.connections import InvalidRedisUrl, parse_url
from event_queue.keys import DEFAULT_PREFIX, PREFIX_PATTERN

IPNetwork = IPv4Network | IPv6Network
NetworkList = Annotated[list[IPNetwork], NoDecode]

MAX_BODY_BYTES = 64 * 1024
MIN_SECRET_BYTES = 24
MIN_TOKEN_CHARS = 16
_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
_SPLIT = re.compile(r"[,\s]+")

_config_file: ContextVar[Path | None] = ContextVar("event_broker_config_file", default=None)


class SettingsError(ConfigProblem, ValueError):
    """The configuration is invalid; each line of the message names a bad key and what to do."""


class BrokerSettings(BaseSettings):
    """Everything the broker needs, validated once when the process starts."""

    # An empty variable (``WEBHOOK_SECRET=`` in a .env file) means "not set", as in every service.
    model_config = SettingsConfigDict(extra="forbid", frozen=True, case_sensitive=False,
                                      env_ignore_empty=True)

    host: str = "0.0.0.0"  # noqa: S104 - a container listens on every interface
    port: int = Field(default=8080, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    redis_key_prefix: str = Field(default=DEFAULT_PREFIX, pattern=PREFIX_PATTERN.pattern)
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    redis_timeout: float = Field(default=1.5, gt=0, le=10)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)

    accounts_file: Path = Path("accounts.yaml")

    webhook_secret: SecretStr | None = None
    webhook_token: SecretStr | None = None
    webhook_auth_disabled: bool = False
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    webhook_allowed_ips: NetworkList = Field(default_factory=list)
    webhook_trusted_proxies: NetworkList = Field(default_factory=list)

    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=256, le=1024 * 1024)
    batch_max_size: int = Field(default=128, ge=1, le=1000)
    batch_concurrency: int = Field(default=2, ge=1, le=16)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides, then the environment, then the YAML file chosen by :func:`load_settings`."""
        path = _config_file.get()
        from_file = (YamlConfigSettingsSource(settings_cls, yaml_file=path),) if path else ()
        return (init_settings, env_settings, *from_file)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        try:
            parse_url(value.get_secret_value())
        except InvalidRedisUrl as exc:
            raise ValueError(exc.reason) from None
        return value

    @model_validator(mode="after")
    def _replicas_need_one_primary(self) -> BrokerSettings:
        cluster = parse_url(self.redis_url.get_secret_value()).kind == "cluster"
        if self.redis_wait_replicas and cluster:
            raise ValueError("redis_wait_replicas: waiting for replicas is supported on a "
                             "server or a Sentinel primary, not on a cluster")
        return self

    @field_validator("webhook_allowed_ips", "webhook_trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in _SPLIT.split(value) if part]
        if isinstance(value, list):
            return [_network(part) for part in value]
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_secrets(value)
        return value

    @field_validator("webhook_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} characters (a random string)")
        return value

    @model_validator(mode="after")
    def _some_auth(self) -> BrokerSettings:
        if not self.webhook_auth_disabled and not (self.webhook_secret or self.webhook_token):
            raise ValueError(
                "no webhook authentication configured: set WEBHOOK_SECRET (Standard Webhooks "
                "signatures) and/or WEBHOOK_TOKEN (shared token); for a local demo only, "
                "WEBHOOK_AUTH_DISABLED=true accepts unauthenticated webhooks"
            )
        return self

    @property
    def signing_keys(self) -> tuple[bytes, ...]:
        """The decoded Standard Webhooks secrets (several during a rotation)."""
        return parse_secrets(self.webhook_secret) if self.webhook_secret else ()

    @property
    def token(self) -> bytes | None:
        """The shared token as bytes, for constant-time comparison."""
        if self.webhook_token is None:
            return None
        return self.webhook_token.get_secret_value().strip().encode()


def _network(value: Any) -> Any:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    try:
        return ip_network(str(value).strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network") from None


def parse_secrets(value: SecretStr) -> tuple[bytes, ...]:
    """Decode ``whsec_<base64>`` secrets separated by commas or spaces; errors never echo them."""
    parts = [p for p in _SPLIT.split(value.get_secret_value()) if p]
    if not parts:
        raise ValueError("is empty; give one or more whsec_<base64> secrets")
    return tuple(_decode_secret(part, position) for position, part in enumerate(parts, 1))


def _decode_secret(part: str, position: int) -> bytes:
    encoded = part.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"secret #{position} is not whsec_ followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"secret #{position} decodes to fewer than {MIN_SECRET_BYTES} bytes")
    return key


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> BrokerSettings:
    """Read and validate the settings; raise :class:`SettingsError` naming every bad key."""
    path = Path(config_file) if config_file else None
    if path is not None:
        _check_config_file(path)
    with _reading(path):
        try:
            return BrokerSettings(**overrides)
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc, path)) from None


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _config_file.set(path)
    try:
        yield
    finally:
        _config_file.reset(token)


def _check_config_file(path: Path) -> None:
    try:
        raw = read_yaml(path, what="configuration file")
    except ConfigProblem as exc:
        raise SettingsError(str(exc)) from None
    if raw is not None and not isinstance(raw, dict):
        raise SettingsError(f"{path}: the configuration file must hold a mapping of settings")


def describe_errors(exc: ValidationError, path: Path | None = None) -> str:
    """One line per error, ``key (VARIABLE): message``, never showing the value (maybe a secret)."""
    source = f" in {path}" if path else ""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in error["loc"])
        message = clean(error["msg"])
        if error["type"] == "extra_forbidden":
            message = "unknown setting" + source
        lines.append(f"{key} ({key.upper()}): {message}" if key else message)
    return "\n".join(lines)
