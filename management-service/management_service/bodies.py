"""Request bodies read strictly: every JSON body is checked by :mod:`event_queue.strict_json`
before FastAPI parses it, so NaN, Infinity, 1e400, non-UTF-8 text and deep nesting get a 422 that
says what is wrong (FastAPI alone would store NaN, or answer an undocumented 400 or a 500)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from event_queue.strict_json import InvalidJson, loads
from management_service.errors import InvalidBody

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class StrictJsonRoute(APIRoute):
    """An APIRoute whose JSON body must be strict JSON (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if request.method in _WITH_BODY:
                body = await request.body()  # cached: FastAPI reads the same bytes again
                if body:
                    _check(body)
            return await handler(request)

        return strict


def _check(body: bytes) -> Any:
    try:
        return loads(body)
    except InvalidJson as exc:
        raise InvalidBody(exc.reason) from None
