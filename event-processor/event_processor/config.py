"""The processor's settings: one pydantic-settings class, read once at start-up.

Structure comes from a YAML file (``config/config.yaml``, or ``--config`` / ``PROCESSOR_CONFIG``);
deployment values come from the environment. Precedence, highest first: keyword arguments, the named
variables in :data:`ENV_OVERRIDES` (``REDIS_URL``, ``IB_HOST``, ...), generic
``PROCESSOR_<SECTION>__<KEY>`` variables, the YAML file, the defaults below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from event_queue.cli import ConfigProblem, clean
from event_queue.cli import read_yaml as read_yaml_file
from event_queue.connections import InvalidRedisUrl, parse_url
from event_queue.finished import (
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_MAX_EVENTS,
    MAX_AGE_DAYS_LIMIT,
    MAX_EVENTS_LIMIT,
    Retention,
)
from event_queue.keys import DEFAULT_PREFIX, PREFIX_PATTERN
from event_queue.requests import Allocation, InvalidTargets, check_allocations

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "config.yaml"
CONFIG_PATH_ENV = "PROCESSOR_CONFIG"
DEFAULT_COMMANDS = "event_processor.commands.factory:create_registry"

# Environment variables that override one key each (deployment values and secrets).
ENV_OVERRIDES: Mapping[str, tuple[str, str]] = {
    "REDIS_URL": ("redis", "url"),
    "REDIS_KEY_PREFIX": ("redis", "key_prefix"),
    "IB_HOST": ("ibkr", "host"),
    "IB_PORT": ("ibkr", "port"),
    "TRADING_MODE": ("ibkr", "trading_mode"),
    "IB_PAPER_PORT": ("ibkr", "paper_port"),
    "IB_LIVE_PORT": ("ibkr", "live_port"),
    "IB_CLIENT_ID": ("ibkr", "client_id"),
    "ACCOUNTS_FILE": ("rebalance", "accounts_file"),
    "PROCESSOR_CONCURRENCY": ("processing", "concurrency"),
    "PROCESSOR_CONSUMER_NAME": ("processing", "consumer_name"),
    "LOG_LEVEL": ("logging", "level"),
    "PROCESSOR_HOST": ("http", "host"),
    "PROCESSOR_PORT": ("http", "port"),
    "HISTORY_MAX_EVENTS": ("history", "max_events"),
    "HISTORY_MAX_AGE_DAYS": ("history", "max_age_days"),
}

# Retry keys the plan removed, and what replaces each.
REMOVED_RETRY_KEYS: Mapping[str, str] = {
    "base_delay": "base_delay was renamed to delay (fixed delay)",
    "backoff_multiplier": "backoff_multiplier was removed: retries wait a fixed delay, no backoff",
    "jitter": "jitter was removed: retries wait exactly delay seconds",
    "max_delay": "max_delay was removed: the delay is fixed, so there is nothing to cap",
}

_config_path: ContextVar[Path | None] = ContextVar("processor_config_path", default=None)


class ConfigError(ConfigProblem):
    """The configuration is invalid; each line of the message names a bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Section):
    """The plan's retry block: ``max_retries`` retries after the first attempt, ``delay`` apart."""

    max_retries: int = Field(ge=0, le=100)
    delay: float = Field(ge=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _reject_removed_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            removed = [REMOVED_RETRY_KEYS[key] for key in data if key in REMOVED_RETRY_KEYS]
            if removed:
                raise ValueError("; ".join(removed))
        return data


class IBKRConfig(_Section):
    """Where IB Gateway (or the simulator) listens, which client library talks to it, how long to wait.

    IB Gateway serves paper and live trading on different ports, so ``port`` follows
    ``trading_mode`` unless it is given: ``paper_port`` (4002, the gateway's default) or
    ``live_port`` (4001). Its container image forwards them to 4004 and 4003 instead, which
    docker-compose.yaml sets.
    """

    enabled: bool = True
    library: Literal["ib_async", "ib_insync"] = "ib_async"
    host: str = "127.0.0.1"
    trading_mode: Literal["paper", "live"] = "paper"
    paper_port: int = Field(default=4002, ge=1, le=65535)
    live_port: int = Field(default=4001, ge=1, le=65535)
    port: int = Field(default=4002, ge=1, le=65535)
    client_id: int = Field(default=1, ge=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    request_timeout: float = Field(default=10.0, gt=0, le=600)
    order_timeout: float = Field(default=60.0, gt=0, le=3600)
    market_data_type: int = Field(default=1, ge=1, le=4)
    connection_retry: RetryConfig = RetryConfig(max_retries=3, delay=5)
    order_retry: RetryConfig = RetryConfig(max_retries=2, delay=1)
    # After a whole connection cycle failed, commands fail at once for this long (0: never).
    circuit_breaker_seconds: float = Field(default=10.0, ge=0, le=600)

    @model_validator(mode="before")
    @classmethod
    def _port_by_trading_mode(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("port"):
            live = data.get("trading_mode") == "live"
            key = "live_port" if live else "paper_port"
            default = cls.model_fields[key].default
            data = {**data, "port": data.get(key) or default}
        return data


# Rebalance keys that were replaced, and by what.
REPLACED_REBALANCE_KEYS: Mapping[str, str] = {
    "buy_cost_buffer_percent": "buy_cost_buffer_percent was replaced by commissions (IBKR's fixed or "
                               "tiered plan, budgeted exactly) and slippage_percent (a margin on "
                               "every execution price)",
}


class CommissionConfig(_Section):
    """The account's IBKR Pro commission plan for US stocks, budgeted on every order.

    ``model`` picks IBKR's published plan (fixed: 0.005 per share, minimum 1.00, maximum 1 % of the
    trade value; tiered: 0.0035, minimum 0.35, maximum 1 %, plus exchange and clearing fees per
    share); every other key overrides one figure of it. Sales also pay the SEC fee and FINRA TAF.
    """

    model: Literal["fixed", "tiered"] = "fixed"
    per_share: float | None = Field(default=None, ge=0, le=1)
    minimum: float | None = Field(default=None, ge=0, le=100)
    maximum_percent: float | None = Field(default=None, gt=0, le=100)
    fees_per_share: float | None = Field(default=None, ge=0, le=1)
    sec_fee_rate: float | None = Field(default=None, ge=0, le=0.01)
    taf_per_share: float | None = Field(default=None, ge=0, le=0.01)
    taf_maximum: float | None = Field(default=None, ge=0, le=100)


class RebalanceConfig(_Section):
    """Where account defaults come from, what a rebalance costs, which prices it trades on, and
    how far a holding may drift before it is traded."""

    accounts_file: Path | None = None
    default_order_type: Literal["MKT", "LMT", "MOC"] = "MKT"
    commissions: CommissionConfig = CommissionConfig()
    slippage_percent: float = Field(default=0.1, ge=0, le=10)
    max_spread_percent: float = Field(default=1.0, gt=0, le=50)
    allow_delayed_quotes: bool = False
    allow_other_currencies: bool = False
    drift_band_percent: float = Field(default=5.0, ge=0, le=100)
    min_order_value: float = Field(default=100.0, ge=0)
    moc_fill_timeout: float = Field(default=90_000.0, gt=0, le=7 * 86_400)

    @model_validator(mode="before")
    @classmethod
    def _reject_replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            replaced = [REPLACED_REBALANCE_KEYS[key] for key in data
                        if key in REPLACED_REBALANCE_KEYS]
            if replaced:
                raise ValueError("; ".join(replaced))
        return data


def _check_strategies(strategies: dict[str, list[Allocation]]) -> dict[str, list[Allocation]]:
    for name, allocations in strategies.items():
        try:
            check_allocations(allocations)  # the broker's and the planner's check
        except InvalidTargets as exc:
            raise ValueError(f"strategy {name!r}: {exc}") from None
    return strategies


class RedisConfig(_Section):
    """The queue's Redis server and how to behave while it is unreachable."""

    url: str = "redis://localhost:6379/0"
    key_prefix: str = Field(default=DEFAULT_PREFIX, pattern=PREFIX_PATTERN.pattern)
    timeout: float = Field(default=2.0, gt=0)
    reconnect_delay: float = Field(default=1.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        try:
            parse_url(value)
        except InvalidRedisUrl as exc:
            raise ValueError(exc.reason) from None
        return value


class ProcessingConfig(_Section):
    """How the worker claims, runs, renews, requeues and drains events."""

    concurrency: int = Field(default=4, ge=1, le=256)
    max_waiting: int = Field(default=16, ge=0, le=10_000)
    requeue_delay: float = Field(default=60.0, ge=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    renew_interval: float | None = Field(default=None, gt=0)
    claim_timeout: float = Field(default=1.0, gt=0, le=30)
    lock_poll_interval: float = Field(default=0.1, gt=0)
    reap_interval: float = Field(default=10.0, gt=0)
    promote_interval: float = Field(default=1.0, gt=0)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    shutdown_grace: float = Field(default=30.0, ge=0)
    commands: str = Field(default=DEFAULT_COMMANDS, pattern=r"^[\w.]+:[\w.]+$")
    consumer_name: str | None = Field(default=None, pattern=r"^[\w.-]{1,64}$")
    use_uvloop: bool = True

    @model_validator(mode="after")
    def _renewal_fits_in_lease(self) -> ProcessingConfig:
        if self.renew_interval is not None and self.renew_interval >= self.lock_fence_seconds:
            raise ValueError(
                f"renew_interval must be shorter than {self.lock_fence_seconds:g} s "
                "(lease_seconds less the fence margin): a command whose account lock is not "
                "confirmed within that time is stopped")
        return self

    @property
    def lock_fence_seconds(self) -> float:
        """How long a command runs without a confirmation of its account lock before it is
        stopped: the lock's lifetime (lease_seconds) less a margin for stopping it."""
        return self.lease_seconds - min(self.lease_seconds / 10, 2.0)

    @property
    def lease_renew_interval(self) -> float:
        """Renew three times per lease unless configured, so one missed renewal is harmless."""
        return self.renew_interval or self.lease_seconds / 3


class HistoryConfig(_Section):
    """How long finished events keep their record (result and timeline): at most
    ``max_events`` of them, none older than ``max_age_days``. The management service must use
    the same values (HISTORY_MAX_EVENTS, HISTORY_MAX_AGE_DAYS)."""

    max_events: int = Field(default=DEFAULT_MAX_EVENTS, ge=1, le=MAX_EVENTS_LIMIT)
    max_age_days: float = Field(default=DEFAULT_MAX_AGE_DAYS, gt=0, le=MAX_AGE_DAYS_LIMIT)
    trim_interval: float = Field(default=60.0, gt=0, le=3600,
                                 description="how often records past the retention are removed")

    @property
    def retention(self) -> Retention:
        """The retention as the queue client takes it."""
        return Retention(max_events=self.max_events, max_age_seconds=self.max_age_days * 86400)


class LoggingConfig(_Section):
    """Log level (lines are JSON, on stdout, as in every program of the project)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"


class HttpConfig(_Section):
    """The processor's own HTTP endpoint: /health/live, /health, /metrics."""

    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104 - a container listens on every interface
    port: int = Field(default=8090, ge=0, le=65535, description="0: any free port")


class Settings(BaseSettings):
    """Every setting of the processor, validated once at start-up."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix="PROCESSOR_", env_nested_delimiter="__",
        env_ignore_empty=True,
    )

    redis: RedisConfig = RedisConfig()
    ibkr: IBKRConfig = IBKRConfig()
    processing: ProcessingConfig = ProcessingConfig()
    history: HistoryConfig = HistoryConfig()
    logging: LoggingConfig = LoggingConfig()
    http: HttpConfig = HttpConfig()
    rebalance: RebalanceConfig = RebalanceConfig()
    strategies: dict[str, list[Allocation]] = Field(default_factory=dict)

    @field_validator("strategies")
    @classmethod
    def _valid_strategies(cls, strategies: dict[str, list[Allocation]]) -> dict[str, list[Allocation]]:
        return _check_strategies(strategies)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _NamedEnvSource(settings_cls),
            env_settings,
            _YamlSource(settings_cls, _config_path.get()),
        )


class _NamedEnvSource(PydanticBaseSettingsSource):
    """The variables of :data:`ENV_OVERRIDES`, each placed at its key."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for variable, (section, key) in ENV_OVERRIDES.items():
            if os.environ.get(variable):  # empty (IB_PORT= in a .env file) means not set
                values.setdefault(section, {})[key] = os.environ[variable]
        return values


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML file, which must hold a mapping of sections."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_yaml(self.path) if self.path is not None else {}


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file; ConfigError if it is missing or not a mapping."""
    try:
        data = read_yaml_file(path, what="configuration file (--config / PROCESSOR_CONFIG)")
    except ConfigProblem as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration file must hold a mapping of sections")
    return data


def config_path(explicit: str | Path | None = None) -> Path:
    """The file to read: the argument, else ``PROCESSOR_CONFIG``, else the packaged default."""
    chosen = explicit or os.environ.get(CONFIG_PATH_ENV)
    return Path(chosen) if chosen else DEFAULT_CONFIG_PATH


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the configuration; raise ConfigError naming every bad key."""
    chosen = config_path(path)
    token = _config_path.set(chosen)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, chosen)) from None
    finally:
        _config_path.reset(token)


def format_errors(exc: ValidationError, path: Path | None = None) -> str:
    """One line per problem: the dotted key, the variable it came from (if so), the problem."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        key = ".".join(str(part) for part in error["loc"]) or "(root)"
        message = clean(error["msg"])
        if error["type"] == "extra_forbidden":
            message = f"unknown setting in {path}" if path else "unknown setting"
        lines.append(f"{key}{_env_hint(error['loc'])}: {message}")
    return "\n".join(lines)


def _env_hint(loc: tuple[int | str, ...]) -> str:
    for variable, path in ENV_OVERRIDES.items():
        if tuple(loc[:2]) == path and os.environ.get(variable):
            return f" (from environment variable {variable})"
    return ""
