"""Admin UI cookies and CSRF tokens (failed logins are limited by gateway.auth.guard).

Sessions themselves live in the database (admin_ui.sessions), so any replica serves any admin and
a restart logs nobody out. The cookie carries only a random session id and an HMAC of it under a
key derived from the server secret, so a forged or guessed id is refused before the database is
even consulted, and a new secret ends every session.

Every session, including the anonymous one a login or setup form gets, has its own CSRF token
(an HMAC of the session id). Forms carry it in a `csrf_token` field; htmx and fetch calls send it
as `X-CSRF-Token`. Login rotates the session id (no session fixation) and logout deletes the
session server-side, so an old cookie is worthless even if it was copied.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request
from starlette.responses import Response

from admin_ui.sessions import Session, SessionStore
from gateway.services import services_of

COOKIE = "modelport_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def derive_key(secret: str) -> bytes:
    """A key used for nothing but session cookies, so it never equals the channel-key secret."""
    return hmac.new(secret.encode(), b"modelport admin-ui session v1", hashlib.sha256).digest()


def is_https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def set_cookie(response: Response, request: Request, store: SessionStore, s: Session) -> None:
    response.set_cookie(
        COOKIE,
        store.cookie_value(s),
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path="/",
        max_age=int(store.max_age_s),
    )


def reads_row(request: Request) -> bool:
    """Page loads and form posts read the session row (they show what the previous request left
    there); htmx updates and /api calls may use the replica's short-lived cache."""
    return request.url.path.startswith("/ui") and not request.headers.get("hx-request")


async def current(request: Request) -> Session | None:
    """The request's session (kept on request.state), logged in or anonymous; None without a
    cookie this server signed."""
    if hasattr(request.state, "ui_session"):
        cached: Session | None = request.state.ui_session
        return cached
    ui = services_of(request).ui
    assert ui is not None  # a UI cookie reaches only an app that built the UI
    store: SessionStore = ui.sessions
    sid = store.parse(request.cookies.get(COOKIE))
    session = None if sid is None else await store.lookup(sid, fresh=reads_row(request))
    request.state.ui_session = session
    return session


def csrf_ok(session: Session | None, presented: str | None) -> bool:
    return bool(session is not None and presented and hmac.compare_digest(presented, session.csrf))


# Sec-Fetch-Site values of a request this site's own pages (or the admin, typing the URL) made.
OWN_FETCHES = frozenset({"same-origin", "none"})


async def api_session_check(request: Request) -> bool:
    """For gateway.deps.require_admin: a logged-in UI session may use /api/*, but unsafe methods
    only with a valid X-CSRF-Token header (a cross-site form cannot set headers), and nothing
    that another site started. The cookie is SameSite=Lax, so a link or redirect from another
    site brings it along on a GET, and some GETs act (One API's `/api/channel/test` probes every
    channel, at the providers' prices); browsers mark such requests `Sec-Fetch-Site: cross-site`
    (or `same-site`), and the UI itself never calls /api/*."""
    if COOKIE not in request.cookies:  # the admin token's callers: no session lookup
        return False
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in OWN_FETCHES:
        return False
    session = await current(request)
    if session is None or session.user is None:
        return False
    if request.method in SAFE_METHODS:
        return True
    return csrf_ok(session, request.headers.get(CSRF_HEADER))
