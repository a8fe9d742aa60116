"""First-start password setup, login, logout and "log out everywhere"."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from admin_ui import auth
from admin_ui.web import form_of, form_str, render, require_form_csrf, ui_state
from gateway.auth.guard import address_key
from gateway.auth.passwords import hash_password, verify_password
from gateway.db.tables import AdminUser
from gateway.deps import is_admin_token
from gateway.errors import RateLimited
from gateway.services import services_of

router = APIRouter()
MIN_PASSWORD = 8


async def admin_exists(request: Request) -> bool:
    async with services_of(request).sessions() as db:
        return bool((await db.exec(select(func.count()).select_from(AdminUser))).one())


async def _anonymous(request: Request) -> auth.Session:
    """The visitor's session, or a new anonymous one to carry the form's CSRF token."""
    session = await auth.current(request)
    return session or ui_state(request).sessions.anonymous()


def _with_cookie(request: Request, response: Response, session: auth.Session) -> Response:
    auth.set_cookie(response, request, ui_state(request).sessions, session)
    return response


def _safe_next(target: str) -> str:
    """Only same-site paths under /ui: never an open redirect."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui") or "\\" in target:
        return "/ui"
    return target


@router.get("/setup")
async def setup_page(request: Request) -> Response:
    if await admin_exists(request):
        return RedirectResponse("/ui/login", 303)
    session = await _anonymous(request)
    return _with_cookie(request, render(request, "setup.html", session), session)


@router.post("/setup")
async def setup_submit(
    request: Request, session: auth.Session | None = Depends(require_form_csrf)
) -> Response:
    """Choosing the first password proves possession of the admin token: without that proof
    the first visitor of a fresh server would become its administrator."""
    assert session is not None  # require_form_csrf refuses a request without one
    if await admin_exists(request):
        return RedirectResponse("/ui/login", 303)
    form = await form_of(request)
    username = form_str(form, "username") or "admin"
    password = form_str(form, "password")
    error = ""
    try:
        proven = is_admin_token(request, form_str(form, "admin_token"))
    except RateLimited as exc:
        page = render(request, "setup.html", session, status=429, error=exc.message)
        page.headers.update(exc.headers)
        return page
    if not proven:
        return render(
            request,
            "setup.html",
            session,
            status=403,
            error="wrong admin token: use the token printed when modelport first started, or "
            "the value of MODELPORT_ADMIN_TOKEN",
            username=username,
        )
    if len(password) < MIN_PASSWORD:
        error = f"the password needs at least {MIN_PASSWORD} characters"
    elif password != form_str(form, "confirm"):
        error = "the two passwords differ"
    if error:
        return render(request, "setup.html", session, status=400, error=error, username=username)
    async with ui_state(request).setup_lock:
        if await admin_exists(request):
            return RedirectResponse("/ui/login", 303)
        pw_hash = await run_in_threadpool(hash_password, password)
        async with services_of(request).sessions() as db:
            db.add(AdminUser(username=username, password_hash=pw_hash))
            try:
                await db.commit()
            except IntegrityError:
                return RedirectResponse("/ui/login", 303)
    return await _log_in(request, session, username)


@router.get("/login")
async def login_page(request: Request) -> Response:
    if not await admin_exists(request):
        return RedirectResponse("/ui/setup", 303)
    session = await _anonymous(request)
    if session.user:
        return RedirectResponse("/ui", 303)
    page = render(
        request, "login.html", session, next=_safe_next(request.query_params.get("next", "/ui"))
    )
    return _with_cookie(request, page, session)


@router.post("/login")
async def login_submit(
    request: Request, session: auth.Session | None = Depends(require_form_csrf)
) -> Response:
    assert session is not None
    form = await form_of(request)
    username = form_str(form, "username")
    password = form_str(form, "password")
    nxt = _safe_next(form_str(form, "next", "/ui"))
    limiter = ui_state(request).limiter
    # Counted before the (slow) verify: parallel guesses take the slots, not just failures.
    keys = (
        address_key(request.client.host if request.client else None),
        f"user:{username.lower()[:200]}",
    )
    wait = limiter.acquire(keys)
    if wait:
        return _too_many(
            render(
                request,
                "login.html",
                session,
                status=429,
                error=f"too many failed logins: wait {wait} seconds and try again",
                username=username,
                next=nxt,
            ),
            wait,
        )
    valid = None
    try:
        async with services_of(request).sessions() as db:
            user = (await db.exec(select(AdminUser).where(AdminUser.username == username))).first()
        valid = user is not None and await run_in_threadpool(
            verify_password, user.password_hash, password
        )
    finally:
        limiter.release(keys, failed=valid is False)
    if not valid:
        return render(
            request,
            "login.html",
            session,
            status=401,
            error="wrong username or password",
            username=username,
            next=nxt,
        )
    return await _log_in(request, session, username, nxt)


def _too_many(page: Response, wait: int) -> Response:
    page.headers["Retry-After"] = str(wait)
    return page


async def _log_in(
    request: Request, old: auth.Session, username: str, target: str = "/ui"
) -> Response:
    """A fresh session id at login: a session id planted before login is worthless after it."""
    store = ui_state(request).sessions
    if old.user is not None:
        await store.delete(old)
    session = await store.create(username)
    return _with_cookie(request, RedirectResponse(target, 303), session)


async def _ending(request: Request) -> auth.Session | None:
    """The logged-in session a logout form ends; the form must carry its CSRF token (else a
    cross-site form could log the admin out)."""
    session = await auth.current(request)
    if session is None or session.user is None:
        return None
    value = (await form_of(request)).get(auth.CSRF_FIELD)
    presented = request.headers.get(auth.CSRF_HEADER) or (value if isinstance(value, str) else None)
    if not auth.csrf_ok(session, presented):
        raise HTTPException(403, "invalid or missing CSRF token: reload the page and try again")
    return session


def _to_login() -> Response:
    response = RedirectResponse("/ui/login", 303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Deletes the session server-side: a copied cookie stops working too, on every replica."""
    session = await _ending(request)
    if session is not None:
        await ui_state(request).sessions.delete(session)
    return _to_login()


@router.post("/logout-all")
async def logout_all(request: Request) -> Response:
    """Ends every session of this user (other browsers, forgotten machines), on every replica."""
    session = await _ending(request)
    if session is not None and session.user is not None:
        await ui_state(request).sessions.delete_user(session.user)
    return _to_login()


async def ensure_admin_user(sessions: object, username: str, password: str) -> bool:
    """MODELPORT_ADMIN_PASSWORD: create the admin user at start when there is none. Replicas
    starting together race here; the unique username lets exactly one of them win."""
    async with sessions() as db:  # type: ignore[operator]
        if (await db.exec(select(func.count()).select_from(AdminUser))).one():
            return False
        db.add(
            AdminUser(
                username=username, password_hash=await run_in_threadpool(hash_password, password)
            )
        )
        try:
            await db.commit()
        except IntegrityError:
            return False
        return True
