"""``/ui``: the operators' web dashboard, server-rendered (Jinja2), usable without JavaScript.

Pages: the overview (counts, health checks with their reasons, processors and their heartbeat age,
events processing and waiting to retry), an event (its record, what happened to it, its result; a
rebalance as a table), the history of finished events with filters, and sign-in. Actions (retry
now, delete, add an event) are forms that need an operator session and a CSRF token; they go
through the same queue manager as the API, so they are validated and audited the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from event_queue import (
    EventNotFound,
    EventState,
    ExecCommand,
    InvalidCursor,
    QueueError,
    QueueUnavailable,
)
from event_queue.requests import EventRequest
from management_service.deps import Services, client_address, get_services
from management_service.errors import ServiceError
from management_service.health import evaluate
from management_service.queue_manager import EventFilters, Operator
from management_service.ui import session as sessions
from management_service.ui.history import HistoryForm, history_rows
from management_service.ui.views import event_view, overview

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
HISTORY_PAGE = 50
# Messages shown after an action, by code: never text taken from the request.
NOTICES = {
    "retried": "The event was sent to the queue; it runs next.",
    "deleted": "The event and its dedup key were deleted.",
    "added": "The event was queued.",
    "signed-in": "Signed in.",
    "signed-out": "Signed out.",
}

router = APIRouter(prefix="/ui", include_in_schema=False)
ServicesDep = Annotated[Services, Depends(get_services)]


class Viewer:
    """What the person at the browser may do on this request."""

    def __init__(self, request: Request, services: Services) -> None:
        self.request, self.settings = request, services.settings
        self.session = sessions.read_cookie(self.settings, request.cookies.get(sessions.COOKIE))
        self.can_view = self.settings.read_api_key is None or self.session is not None
        self.can_act = self.session is not None and self.session.can_act
        self.csrf = sessions.csrf_token(self.settings, self.session) if self.session else ""

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        notice = NOTICES.get(self.request.query_params.get("done", ""))
        response = TEMPLATES.TemplateResponse(
            self.request, template, {"viewer": self, "notice": notice, **context},
            status_code=status)
        response.headers["Cache-Control"] = "no-store"
        return response


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path inside the UI: never an absolute URL (no open redirect)."""
    if not target or not target.startswith("/ui") or "//" in target or "\\" in target:
        return "/ui"
    return target


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {key: values[-1] for key, values in parse_qs(body, keep_blank_values=True).items()}


def _same_site(request: Request) -> bool:
    """Refuse a form posted from another site (browsers send these headers)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


async def _action(request: Request, services: Services) -> tuple[Viewer, dict[str, str]] | Response:
    """The viewer and form of an action, or the response refusing it."""
    viewer = Viewer(request, services)
    form = await _form(request)
    if not viewer.can_act or viewer.session is None:
        return viewer.render("error.html", 403, title="Not allowed",
                             message="Sign in with the operator key (MANAGEMENT_API_KEY) to act.")
    if not _same_site(request) or not sessions.csrf_valid(services.settings, viewer.session,
                                                           form.get("csrf")):
        return viewer.render("error.html", 403, title="Refused",
                             message="The form was stale or came from another site; reload the "
                                     "page and try again.")
    return viewer, form


def _unavailable(viewer: Viewer, exc: QueueUnavailable) -> HTMLResponse:
    return viewer.render("error.html", 503, title="Queue unavailable", message=str(exc))


# -- pages ----------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def overview_page(request: Request, services: ServicesDep) -> Response:
    """Everything an operator checks first, refreshed every few seconds."""
    viewer = Viewer(request, services)
    if not viewer.can_view:
        return _login_redirect(request)
    try:
        context = await _overview_context(services)
    except QueueUnavailable as exc:
        return _unavailable(viewer, exc)
    return viewer.render("overview.html", **context)


@router.get("/overview-body", response_class=HTMLResponse)
async def overview_fragment(request: Request, services: ServicesDep) -> Response:
    """The overview's body alone, for the page's refresh script."""
    viewer = Viewer(request, services)
    if not viewer.can_view:
        return Response(status_code=401)
    try:
        context = await _overview_context(services)
    except QueueUnavailable as exc:
        return viewer.render("_unavailable.html", 503, message=str(exc))
    return viewer.render("_overview_body.html", **context)


async def _overview_context(services: Services) -> dict[str, Any]:
    health = services.settings.health
    manager = services.manager
    seen = await manager.observe(window_seconds=health.processor_window_seconds,
                                 timeout=health.timeout_seconds,
                                 sample_size=health.offending_events_shown)
    waiting = await manager.list_events(EventFilters(state=EventState.RETRY_WAIT, limit=50))
    running = await manager.list_events(EventFilters(state=EventState.PROCESSING, limit=50))
    return {"overview": overview(seen, evaluate(seen, health), waiting, running)}


@router.get("/events/{event_id}", response_class=HTMLResponse)
async def event_page(request: Request, services: ServicesDep, event_id: str) -> Response:
    """One event, live or finished: its record, its timeline and its result."""
    viewer = Viewer(request, services)
    if not viewer.can_view:
        return _login_redirect(request)
    try:
        event = await services.manager.get_event(event_id)
    except EventNotFound:
        return viewer.render("error.html", 404, title="No such event",
                             message=f"No event has id {event_id}, or its record is older "
                                     "than the history keeps.")
    except QueueUnavailable as exc:
        return _unavailable(viewer, exc)
    return viewer.render("event.html", event=event_view(event))


@router.get("/history", response_class=HTMLResponse)
async def history_page(request: Request, services: ServicesDep) -> Response:
    """Finished events, newest first, filtered by account, command, outcome and finish time,
    in pages (Older / Newer follow the API's cursors)."""
    viewer = Viewer(request, services)
    if not viewer.can_view:
        return _login_redirect(request)
    form = HistoryForm.read(request.query_params)
    context: dict[str, Any] = {"form": form, "commands": [c.value for c in ExecCommand],
               "retention": services.settings.retention}
    if form.problems:
        return viewer.render("history.html", 422, rows=[], page=None, **context)
    try:
        page = await services.manager.history(form.query(HISTORY_PAGE))
    except InvalidCursor:
        form.problems.append("That page link is no longer valid: start again from the newest.")
        return viewer.render("history.html", 422, rows=[], page=None, **context)
    except QueueUnavailable as exc:
        return _unavailable(viewer, exc)
    return viewer.render("history.html", rows=history_rows(page.entries), page=page,
                         older_query=form.link(before=page.older),
                         newer_query=form.link(after=page.newer), newest_query=form.link(),
                         **context)


# -- signing in -----------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, services: ServicesDep) -> Response:
    """The sign-in form."""
    return Viewer(request, services).render(
        "login.html", next=_safe_next(request.query_params.get("next")), problem=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, services: ServicesDep) -> Response:
    """Exchange an API key for a session cookie (the key itself is never stored in it)."""
    viewer = Viewer(request, services)
    form = await _form(request)
    target = _safe_next(form.get("next"))
    role = sessions.role_for_key(services.settings, form.get("api_key", ""))
    if not _same_site(request) or role is None:
        return viewer.render("login.html", 401, next=target,
                             problem="That key is not the operator or the read key.")
    response = RedirectResponse(_with_notice(target, "signed-in"), status_code=303)
    response.set_cookie(sessions.COOKIE, sessions.new_cookie(services.settings, role),
                        max_age=sessions.LIFETIME_SECONDS, path="/ui", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the session."""
    response = RedirectResponse("/ui/login?done=signed-out", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/ui")
    return response


# -- actions --------------------------------------------------------------------------------------


@router.post("/events/{event_id}/retry")
async def retry(request: Request, services: ServicesDep, event_id: str) -> Response:
    """Send a retry-waiting event to the queue now."""
    checked = await _action(request, services)
    if isinstance(checked, Response):
        return checked
    viewer, _ = checked
    try:
        await services.manager.retry_event(event_id, Operator(client=client_address(request)))
    except (QueueError, ServiceError) as exc:
        return _refused(viewer, exc)
    return RedirectResponse(_with_notice(f"/ui/events/{quote(event_id)}", "retried"), 303)


@router.post("/events/{event_id}/delete")
async def delete(request: Request, services: ServicesDep, event_id: str) -> Response:
    """Delete an event and its dedup key (refused while it is processing)."""
    checked = await _action(request, services)
    if isinstance(checked, Response):
        return checked
    viewer, _ = checked
    try:
        await services.manager.delete_event(event_id, Operator(client=client_address(request)))
    except (QueueError, ServiceError) as exc:
        return _refused(viewer, exc)
    return RedirectResponse(_with_notice("/ui", "deleted"), 303)


@router.post("/events")
async def add(request: Request, services: ServicesDep) -> Response:
    """Queue an event by hand, validated as the broker validates a webhook."""
    checked = await _action(request, services)
    if isinstance(checked, Response):
        return checked
    viewer, form = checked
    try:
        data = json.loads(form.get("data") or "{}")
    except ValueError as exc:
        return viewer.render("error.html", 422, title="Not queued",
                             message=f"data: not valid JSON ({exc})")
    try:
        body = EventRequest.model_validate({"account_id": form.get("account_id", "").strip(),
                                            "exec_command": form.get("exec_command", ""),
                                            "data": data})
        event_id = await services.manager.add_event(body, Operator(client=client_address(request)))
    except (QueueError, ServiceError) as exc:
        return _refused(viewer, exc)
    except (ValueError, ValidationError) as exc:  # invalid fields, unknown or disabled account
        return viewer.render("error.html", 422, title="Not queued", message=_invalid(exc))
    return RedirectResponse(_with_notice(f"/ui/events/{quote(event_id)}", "added"), 303)


def _invalid(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in exc.errors(include_input=False, include_url=False))
    return str(exc)


def _refused(viewer: Viewer, exc: Exception) -> HTMLResponse:
    status = 503 if isinstance(exc, QueueUnavailable) else 404 if isinstance(
        exc, EventNotFound) else 409
    return viewer.render("error.html", status, title="Not done", message=str(exc))


def _with_notice(path: str, code: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}done={code}"
