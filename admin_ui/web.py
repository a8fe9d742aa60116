"""What every UI route shares: the UI's state (the services' `ui`), the login/CSRF dependency, and
template rendering with the session's CSRF token and flash messages filled in."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import FormData
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from admin_ui import auth
from admin_ui.sessions import SessionStore
from gateway import __version__
from gateway.auth.guard import AttemptLimiter
from gateway.services import services_of

HERE = Path(__file__).resolve().parent


class LoginRequired(Exception):
    """Raised by `require_user` on a safe request without a logged-in session: redirect."""


@dataclass(slots=True)
class UIState:
    sessions: SessionStore
    limiter: AttemptLimiter  # failed logins, per client address and per username
    templates: Jinja2Templates
    setup_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def admin_session(self, request: Request) -> bool:
        """For gateway.deps.require_admin: a UI session may call /api/* (admin_ui.auth)."""
        return await auth.api_session_check(request)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["ts"] = format_ts
    env.filters["ago"] = format_ago
    env.filters["num"] = lambda v: f"{int(v or 0):,}"
    env.filters["usd"] = lambda q: f"${(q or 0) / 500000:,.4f}"
    env.globals["version"] = __version__
    return templates


def format_ts(value: float | int | None) -> str:
    if not value or value < 0:
        return "—"
    return dt.datetime.fromtimestamp(float(value)).strftime("%Y-%m-%d %H:%M:%S")


def format_ago(value: float | int | None) -> str:
    if not value or value < 0:
        return "never"
    seconds = int(dt.datetime.now().timestamp() - float(value))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def ui_state(request: Request) -> UIState:
    ui = services_of(request).ui
    assert ui is not None  # these routes exist only where the UI was built
    return ui


async def form_of(request: Request) -> FormData:
    """The parsed form, cached by Starlette on the request (the CSRF check reads it first)."""
    return await request.form()


async def require_user(request: Request) -> auth.Session:
    """A logged-in session; for unsafe methods also a valid CSRF token (header or form field)."""
    session = await auth.current(request)
    if request.method in auth.SAFE_METHODS:
        if session is None or session.user is None:
            raise LoginRequired()
        return session
    presented = request.headers.get(auth.CSRF_HEADER)
    if not presented and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await form_of(request)).get(auth.CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if session is None or session.user is None:
        raise HTTPException(403, "log in first: your session has ended")
    if not auth.csrf_ok(session, presented):
        raise HTTPException(403, "invalid or missing CSRF token: reload the page and try again")
    return session


async def require_form_csrf(request: Request) -> auth.Session | None:
    """Login and setup forms: the anonymous session's CSRF token must come back with the form."""
    session = await auth.current(request)
    value = (await form_of(request)).get(auth.CSRF_FIELD)
    if not auth.csrf_ok(session, value if isinstance(value, str) else None):
        raise HTTPException(403, "invalid or missing CSRF token: reload the page and try again")
    return session


async def close_form(request: Request) -> AsyncIterator[None]:
    """Closes the form a route or the CSRF check read (form_of), whatever the outcome: a
    multipart upload (the playground's audio) is spooled to a temporary file that nothing else
    closes. Listed first among the pages' dependencies, so a refusal (403) closes it too."""
    try:
        yield
    finally:
        await request.close()


async def save_session(request: Request) -> AsyncIterator[None]:
    """Stores what the route left for the next page view (flash messages, a new token's key)
    before the response goes out, so the redirect that follows finds it on any replica. Used
    with scope="function": FastAPI runs the part after `yield` before sending the response."""
    yield
    session: auth.Session | None = getattr(request.state, "ui_session", None)
    if session is not None and session.dirty:
        await ui_state(request).sessions.save(session)


UserDep = Annotated[auth.Session, Depends(require_user)]


def render(
    request: Request,
    template: str,
    session: auth.Session | None,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    context.setdefault("flash", session.pop_flash() if session else [])
    return ui_state(request).templates.TemplateResponse(
        request,
        template,
        {"session": session, "csrf": session.csrf if session else "", **context},
        status_code=status,
    )


def flash(session: auth.Session, message: str, kind: str = "ok") -> None:
    session.add_flash(kind, message)


def form_str(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else default
