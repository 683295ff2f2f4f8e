"""Request dependencies: the app's services and the API-key check (written once, used twice).

``OperatorDep`` guards mutations (and ``GET /audit``): the ``X-API-Key`` header (name configurable)
must equal ``MANAGEMENT_API_KEY``; with no key configured, mutations are refused (403), never open.
``READ_ACCESS`` guards reads when ``MANAGEMENT_READ_API_KEY`` is set (either key is accepted then).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, cast

from fastapi import Depends, Request
from pydantic import SecretStr

from management_service.config import Settings
from management_service.errors import ApiKeyMissing, ApiKeyWrong, MutationsDisabled
from management_service.metrics import Metrics
from management_service.queue_manager import Operator, QueueManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the lifespan makes for one app and every request uses."""

    settings: Settings
    manager: QueueManager
    metrics: Metrics


class Access(StrEnum):
    """What a request wants to do."""

    READ = "read"
    MUTATE = "mutate"


def services_of(request: Request) -> Services:
    """The services the lifespan put in the request state."""
    return cast(Services, request.state.services)


async def get_services(request: Request) -> Services:
    """Dependency: the app's services (async, so it runs on the loop, not in a thread)."""
    return services_of(request)


async def get_settings(request: Request) -> Settings:
    """Dependency: the app's settings."""
    return services_of(request).settings


async def get_manager(request: Request) -> QueueManager:
    """Dependency: the app's queue manager."""
    return services_of(request).manager


def client_address(request: Request) -> str:
    """The caller's address (uvicorn resolves trusted proxy headers)."""
    return request.client.host if request.client else "unknown"


def _keys_for(settings: Settings, access: Access) -> list[SecretStr] | None:
    """Keys that grant ``access``; None when access is open (reads without a read key)."""
    admin = [settings.api_key] if settings.api_key else []
    if access is Access.MUTATE:
        return admin
    if settings.read_api_key is None:
        return None
    return [settings.read_api_key, *admin]


def _refuse(request: Request, access: Access, error: Exception) -> Exception:
    logger.warning(
        "request refused",
        extra={"fields": {"access": access.value, "reason": str(error), "method": request.method,
                          "path": request.url.path, "client": client_address(request)}},
    )
    return error


def key_problem(settings: Settings, access: Access, presented: str | None) -> Exception | None:
    """Why the key ``presented`` (None: no header) does not grant ``access``, or None when it
    does; the one place keys are compared (in constant time)."""
    accepted = _keys_for(settings, access)
    if accepted is None:
        return None
    if not accepted:
        return MutationsDisabled()
    if presented is None:
        return ApiKeyMissing(settings.api_key_header)
    given = presented.encode()
    matches = [hmac.compare_digest(given, key.get_secret_value().encode()) for key in accepted]
    return None if any(matches) else ApiKeyWrong()


def authorize(request: Request, access: Access) -> Operator:
    """Check the API key for ``access``; a refusal is logged and raised."""
    settings = services_of(request).settings
    problem = key_problem(settings, access, request.headers.get(settings.api_key_header))
    if problem is not None:
        raise _refuse(request, access, problem)
    return Operator(client=client_address(request))


async def require_operator(request: Request) -> Operator:
    """Dependency of every mutation."""
    return authorize(request, Access.MUTATE)


async def require_reader(request: Request) -> Operator:
    """Dependency of every read except the health endpoints and metrics."""
    return authorize(request, Access.READ)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ManagerDep = Annotated[QueueManager, Depends(get_manager)]
ServicesDep = Annotated[Services, Depends(get_services)]
OperatorDep = Annotated[Operator, Depends(require_operator)]
READ_ACCESS = Depends(require_reader)
