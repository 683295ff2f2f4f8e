"""The OpenAPI document, with the API-key scheme on the operations that really require it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from management_service import __version__
from management_service.config import Settings
from management_service.deps import require_operator, require_reader

SCHEME = "ApiKey"


def _calls(dependant: Dependant) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def secured_operations(routers: Iterable[APIRouter], settings: Settings) -> set[tuple[str, str]]:
    """(method, path) of every operation whose dependencies demand the API key."""
    secured = set()
    for router in routers:
        router_calls = {d.dependency for d in router.dependencies}
        for route in router.routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            calls = _calls(route.dependant) | router_calls
            if require_operator in calls or (
                require_reader in calls and settings.read_api_key is not None
            ):
                secured |= {(m.lower(), route.path_format) for m in route.methods or ()}
    return secured


def install_openapi(app: FastAPI, settings: Settings, routers: Iterable[APIRouter]) -> None:
    """Build the document once, on first request, from the routes' real dependencies."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=__version__,
                             description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            SCHEME: {"type": "apiKey", "in": "header", "name": settings.api_key_header}
        }
        for method, path in secured_operations(routers, settings):
            schema["paths"][path][method]["security"] = [{SCHEME: []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
