"""Settings of the management service: one class, read once at start-up.

Sources, highest priority first: arguments given to :class:`Settings`, the environment, then the
``management:`` section of the YAML file named by ``MANAGEMENT_CONFIG`` (default ``config.yaml`` in
the working directory). Secrets (the API keys) come from the environment only.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from event_queue.cli import ConfigProblem, clean, read_yaml
from event_queue.connections import InvalidRedisUrl, parse_url
from event_queue.finished import (
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_MAX_EVENTS,
    MAX_AGE_DAYS_LIMIT,
    MAX_EVENTS_LIMIT,
    Retention,
)
from event_queue.keys import DEFAULT_PREFIX, PREFIX_PATTERN

CONFIG_ENV = "MANAGEMENT_CONFIG"
DEFAULT_CONFIG_FILE = Path("config.yaml")
CONFIG_SECTION = "management"
MIN_API_KEY_LENGTH = 16
_HEADER_NAME = r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$"


# Settings whose variable is not MANAGEMENT_<KEY>; secrets are read from the environment only.
_VARIABLES = {"redis_connection": "REDIS_URL", "redis_key_prefix": "REDIS_KEY_PREFIX",
              "accounts_file": "ACCOUNTS_FILE", "history_max_events": "HISTORY_MAX_EVENTS",
              "history_max_age_days": "HISTORY_MAX_AGE_DAYS",
              "api_key": "MANAGEMENT_API_KEY", "read_api_key": "MANAGEMENT_READ_API_KEY"}
_SECRETS = ("api_key", "read_api_key")

_config_file: ContextVar[Path | None] = ContextVar("management_config_file", default=None)


class ConfigError(ConfigProblem, ValueError):
    """The configuration is invalid; each line of the message names a bad key."""


class HealthSettings(BaseModel):
    """Thresholds of ``GET /health``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requeued_events_allowed: int = Field(
        default=0, ge=0, description="unhealthy when more events than this have times_queued > 1"
    )
    processor_check: bool = Field(
        default=True, description="unhealthy when events wait and no processor sent a heartbeat"
    )
    processor_window_seconds: float = Field(
        default=60.0, gt=0, le=86400, description="a processor counts as alive this long"
    )
    timeout_seconds: float = Field(
        default=1.5, gt=0, le=10, description="answer 503 'error' when Redis takes longer"
    )
    offending_events_shown: int = Field(default=5, ge=1, le=50)
    redis_memory_percent: float = Field(
        default=95.0, ge=0, le=100,
        description="unhealthy when Redis uses this much of its maxmemory (0: no memory check)",
    )
    consistency_check: bool = Field(
        default=True, description="unhealthy when an event sits in no area (or in two), or a "
        "dedup key belongs to no event",
    )


class Settings(BaseSettings):
    """Everything the service needs, validated once at start-up."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix="MANAGEMENT_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
    )

    api_key_header: str = Field(default="X-API-Key", pattern=_HEADER_NAME)
    redis_connection: str = Field(
        default="redis://localhost:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "redis_connection"),
    )
    redis_key_prefix: str = Field(
        default=DEFAULT_PREFIX, pattern=PREFIX_PATTERN.pattern,
        validation_alias=AliasChoices("REDIS_KEY_PREFIX", "redis_key_prefix"),
    )
    api_key: SecretStr | None = Field(default=None, validation_alias="MANAGEMENT_API_KEY")
    read_api_key: SecretStr | None = Field(
        default=None, validation_alias="MANAGEMENT_READ_API_KEY"
    )
    accounts_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("ACCOUNTS_FILE", "accounts_file")
    )
    host: str = "0.0.0.0"  # noqa: S104 - a container listens on every interface
    port: int = Field(default=8000, ge=1, le=65535)
    redis_timeout_seconds: float = Field(default=1.0, gt=0, le=30)
    max_body_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    audit_cap: int = Field(default=1000, ge=10, le=100_000)
    history_max_events: int = Field(
        default=DEFAULT_MAX_EVENTS, ge=1, le=MAX_EVENTS_LIMIT,
        validation_alias=AliasChoices("HISTORY_MAX_EVENTS", "history_max_events"),
        description="finished events kept (the processor's history.max_events: use the same)")
    history_max_age_days: float = Field(
        default=DEFAULT_MAX_AGE_DAYS, gt=0, le=MAX_AGE_DAYS_LIMIT,
        validation_alias=AliasChoices("HISTORY_MAX_AGE_DAYS", "history_max_age_days"),
        description="nor longer than this (the processor's history.max_age_days)")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    health: HealthSettings = Field(default_factory=HealthSettings)

    @field_validator("redis_connection")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        try:
            parse_url(value)
        except InvalidRedisUrl as exc:
            raise ValueError(exc.reason) from None
        return value

    @field_validator("api_key", "read_api_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_API_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_API_KEY_LENGTH} characters")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = _config_file.get()
        if yaml_file is None:
            return init_settings, env_settings
        yaml_source = YamlConfigSettingsSource(
            settings_cls, yaml_file=yaml_file, yaml_config_section=CONFIG_SECTION
        )
        return init_settings, env_settings, yaml_source

    @property
    def retention(self) -> Retention:
        """How long finished events keep their record (enforced when an operator deletes one;
        the processor enforces it for the events it completes)."""
        return Retention(max_events=self.history_max_events,
                         max_age_seconds=self.history_max_age_days * 86400)

    @property
    def mutations_enabled(self) -> bool:
        """Mutations are refused unless an API key is configured."""
        return self.api_key is not None


def config_file_path(explicit: str | Path | None = None) -> Path | None:
    """The YAML file to read: the argument, else ``MANAGEMENT_CONFIG``, else ``config.yaml`` if any."""
    named = explicit or os.environ.get(CONFIG_ENV)
    if named:
        return Path(named)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings; raise ConfigError naming every bad key, one per line."""
    path = config_file_path(config_file)
    if path is not None:
        _check_file(path)
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(exc, path)) from None
    finally:
        _config_file.reset(token)


def _check_file(path: Path) -> None:
    try:
        raw = read_yaml(path, what="configuration file (--config / MANAGEMENT_CONFIG)")
    except ConfigProblem as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get(CONFIG_SECTION), dict):
        raise ConfigError(f"{path}: needs a '{CONFIG_SECTION}:' section holding the settings")
    secrets = [key for key in _SECRETS if key in raw[CONFIG_SECTION]]
    if secrets:
        raise ConfigError("\n".join(
            f"{path}: {CONFIG_SECTION}.{key}: secrets are not read from the file; "
            f"set {_VARIABLES[key]} in the environment" for key in secrets))


def describe(exc: ValidationError, path: Path | None) -> str:
    """One line per bad key, e.g. ``health.timeout_seconds (MANAGEMENT_HEALTH__TIMEOUT_SECONDS):
    Input should be greater than 0``."""
    lines = []
    by_variable = {variable: name for name, variable in _VARIABLES.items()}
    for error in exc.errors(include_input=False, include_url=False):
        parts = [str(p) for p in error["loc"]]
        if parts and parts[0] in by_variable:  # reported under the variable it was read from
            parts[0] = by_variable[parts[0]]
        key = ".".join(parts) or "(settings)"
        variable = _VARIABLES.get(parts[0] if parts else "") or \
            f"MANAGEMENT_{key.upper().replace('.', '__')}"
        message = clean(error["msg"])
        if error["type"] == "extra_forbidden":
            message = f"unknown setting in {path}" if path else "unknown setting"
        lines.append(f"{key} ({variable}): {message}")
    return "\n".join(lines)
