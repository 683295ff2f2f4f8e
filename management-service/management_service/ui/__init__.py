"""The operators' web dashboard at ``/ui`` (server-rendered; see :mod:`.routes`)."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from management_service.ui.routes import router

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Serve the dashboard and its two static files (nothing is loaded from elsewhere)."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
