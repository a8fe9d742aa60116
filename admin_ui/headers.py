"""Security headers: on every response, no MIME sniffing and no Referer leaving the gateway (UI
URLs carry ids, and the referrer of a page the UI links to would name this admin's host); on
the UI's pages, a Content-Security-Policy that fits them and no framing (clickjacking).

The policy fits the pages as they are: scripts only from /ui/static (htmx and app.js, no inline
script), inline styles (the dashboard's legend colours, htmx's indicator style), images and
audio from the gateway itself or data:/blob: URLs (playground results), requests back to this
origin only. Pure ASGI: on the relay path it costs two header tuples per response.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' data: blob:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
EVERYWHERE = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
PAGES = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY")]
# FastAPI's /docs page runs an inline script: it gets no CSP, but is never framed either.
DOCS = [(b"x-frame-options", b"DENY")]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = list(EVERYWHERE)
        if path == "/" or path.startswith("/ui"):
            extra += PAGES
        elif path.startswith(("/docs", "/redoc")):
            extra += DOCS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(h for h in extra if h[0] not in names),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
