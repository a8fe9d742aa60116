"""The admin UI's factory and routes (called from gateway.app.create_app).

Pages live under /ui (/ redirects there), static files under /ui/static. `build_ui` makes the
UI's state (session store, login limiter, templates), the services' `ui`, whose `admin_session`
lets a logged-in UI session use the One API admin API too (admin_ui.auth.api_session_check).
`start_ui` creates the admin user from MODELPORT_ADMIN_PASSWORD and announces ended sessions on
the cluster bus (`ui_sessions`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse, Response

from admin_ui import auth
from admin_ui.headers import SecurityHeaders
from admin_ui.routes import (
    channels,
    dashboard,
    fastgpt,
    login,
    logs,
    models,
    playground,
    prices,
    tokens,
)
from admin_ui.sessions import SessionStore
from admin_ui.web import (
    HERE,
    LoginRequired,
    UIState,
    close_form,
    make_templates,
    require_user,
    save_session,
)
from gateway.auth.secrets import secret_key
from gateway.services import Services

log = logging.getLogger("modelport.ui")


def build_ui(services: Services) -> UIState:
    secret = secret_key(services.settings)
    return UIState(
        sessions=SessionStore(auth.derive_key(secret), services.sessions, services.box),
        limiter=services.guards.ui_login,
        templates=make_templates(),
    )


def install(app: FastAPI) -> None:
    app.include_router(login.router, prefix="/ui", include_in_schema=False)
    for page in (dashboard, channels, tokens, models, prices, logs, fastgpt, playground):
        app.include_router(
            page.router,
            prefix="/ui",
            dependencies=[
                Depends(close_form),
                Depends(require_user),
                Depends(save_session, scope="function"),
            ],
            include_in_schema=False,
        )
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.add_middleware(SecurityHeaders)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ui", 307)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        target = "/ui/login?next=" + request.url.path
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, 303)


async def start_ui(services: Services, ui: UIState) -> None:
    password = services.settings.admin_password
    if password is not None and await login.ensure_admin_user(
        services.sessions, "admin", password.get_secret_value()
    ):
        log.info("created admin user 'admin' from MODELPORT_ADMIN_PASSWORD")
    bus, store = services.bus, ui.sessions

    async def ended(msg: dict[str, Any]) -> None:
        store.forget(msg.get("digest"))  # none (all ended, or Redis reconnected): drop all

    async def announce(digest: str | None) -> None:
        await bus.publish("ui_sessions", digest=digest)

    bus.on("ui_sessions", ended)
    store.announce = announce
