"""Admin UI sessions in the database: every gateway replica knows them, and a restart keeps them.

The cookie carries a random session id and an HMAC of it; the `adminsession` table keeps only the
SHA-256 of the id (`hash_key`, as for sk- keys: 256 random bits need no slow hash), so a copy of
the database yields no usable cookie. The CSRF token is another HMAC of the id, stored nowhere,
so anonymous visitors (the login and setup forms) need no row at all: only a successful login
writes one, and a flood of login-page views costs no storage.

A session ends after `idle_s` without requests (12 h), `max_age_s` after login (7 days), at
logout, at "log out everywhere", and when the server secret changes (the cookie's HMAC no longer
verifies). Expired rows are deleted at each login.

Which copy a request sees:
- page loads and form posts (`fresh=True`) read the row: they show what the previous request left
  for them (flash messages, a new token's key), and that request may have run on another replica;
- htmx updates and /api calls may use this process's copy, at most `cache_ttl_s` (5 s) old. An
  ended session is announced on the cluster bus (`ui_sessions`), so with Redis configured the
  other replicas drop their copy within milliseconds; without Redis the 5 s TTL is the bound.
`seen_at` is written at most once a minute per session and replica (idle expiry is accurate to a
minute), so the cached path writes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, or_, update
from sqlmodel import col, select

from gateway.auth.keys import hash_key
from gateway.auth.secrets import SecretBox
from gateway.db.tables import AdminSession

IDLE_S = 12 * 3600
MAX_AGE_S = 7 * 24 * 3600
CACHE_TTL_S = 5.0
SEEN_EVERY_S = 60
CACHE_MAX = 4096


def _flash_of(raw: str) -> list[tuple[str, str]]:
    return [(str(kind), str(message)) for kind, message in orjson.loads(raw)]


async def _nobody(_digest: str | None) -> None:
    """The announcement before the cluster bus is wired (and in a lone process)."""


@dataclass(slots=True)
class Session:
    """One request's view of a session. Flash messages and a new token's key wait in the row for
    the next page view; `dirty` says this request changed them."""

    sid: str
    csrf: str
    user: str | None = None  # None: anonymous (login and setup forms), no row
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, message), shown once
    secret_once: str | None = None
    fresh: bool = False  # read from the row (False: from the cache, waiting messages unknown)
    dirty: bool = False

    def add_flash(self, kind: str, message: str) -> None:
        self.flash.append((kind, message))
        self.dirty = True

    def pop_flash(self) -> list[tuple[str, str]]:
        out, self.flash = self.flash, []
        self.dirty = self.dirty or bool(out)
        return out

    def keep_secret(self, value: str) -> None:
        self.secret_once = value
        self.dirty = True

    def take_secret(self) -> str | None:
        value, self.secret_once = self.secret_once, None
        self.dirty = self.dirty or value is not None
        return value


@dataclass(slots=True)
class _Cached:
    user: str
    seen: int  # seen_at as the row has it
    expires: int
    fetched: float  # Sessions.cache_clock()


class SessionStore:
    """Creates, finds and ends sessions; `sessions` is the app's database session factory."""

    def __init__(
        self,
        key: bytes,
        sessions: Any,
        box: SecretBox,
        *,
        idle_s: int = IDLE_S,
        max_age_s: int = MAX_AGE_S,
        cache_ttl_s: float = CACHE_TTL_S,
    ) -> None:
        self._key = key
        self._db = sessions
        self._box = box
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.cache_ttl_s = cache_ttl_s
        self.cache_clock: Callable[[], float] = time.monotonic  # ages cached copies; tests set it
        self._cache: dict[str, _Cached] = {}
        # Tells the other replicas a session ended (digest) or all did (None); set by
        # admin_ui.integration to publish on the cluster bus.
        self.announce: Callable[[str | None], Awaitable[None]] = _nobody

    # --- cookie ------------------------------------------------------------------------------
    def _mac(self, purpose: bytes, sid: str) -> str:
        return hmac.new(self._key, purpose + sid.encode(), hashlib.sha256).hexdigest()

    def cookie_value(self, session: Session) -> str:
        return f"{session.sid}.{self._mac(b'cookie:', session.sid)}"

    def parse(self, cookie: str | None) -> str | None:
        """The session id of a cookie this server signed; None for a forged or foreign one."""
        if not cookie or "." not in cookie:
            return None
        sid, mac = cookie.rsplit(".", 1)
        return sid if hmac.compare_digest(mac, self._mac(b"cookie:", sid)) else None

    def anonymous(self, sid: str | None = None) -> Session:
        sid = sid or secrets.token_urlsafe(32)
        return Session(sid=sid, csrf=self._mac(b"csrf:", sid))

    # --- lifecycle ---------------------------------------------------------------------------
    async def create(self, user: str) -> Session:
        """A new logged-in session (a new id: login never reuses the anonymous one)."""
        now = int(time.time())
        session = self.anonymous()
        session.user = user
        async with self._db() as db:
            await db.exec(
                delete(AdminSession).where(
                    or_(
                        col(AdminSession.expires_at) <= now,
                        col(AdminSession.seen_at) <= now - self.idle_s,
                    )
                )
            )
            db.add(
                AdminSession(
                    id_hash=hash_key(session.sid),
                    username=user,
                    created_at=now,
                    seen_at=now,
                    expires_at=now + self.max_age_s,
                )
            )
            await db.commit()
        return session

    async def lookup(self, sid: str, *, fresh: bool) -> Session:
        """The logged-in session of `sid`, or an anonymous one when it has ended (or never was)."""
        key = hash_key(sid)
        now = int(time.time())
        entry = None if fresh else self._cache.get(key)
        if entry is not None and self.cache_clock() - entry.fetched > self.cache_ttl_s:
            entry = None
        if entry is None:
            session = await self._load(sid, key, now)
            if session is None:
                return self.anonymous(sid)
            entry = self._cache[key]
        elif now >= entry.expires or now - entry.seen >= self.idle_s:
            self._cache.pop(key, None)
            return self.anonymous(sid)
        else:
            session = self.anonymous(sid)
            session.user = entry.user
        if now - entry.seen >= SEEN_EVERY_S:
            if not await self._touch(key, now):  # ended on another replica meanwhile
                self._cache.pop(key, None)
                return self.anonymous(sid)
            entry.seen = now
        return session

    async def _load(self, sid: str, key: str, now: int) -> Session | None:
        async with self._db() as db:
            row = (
                await db.exec(
                    select(AdminSession).where(
                        AdminSession.id_hash == key,
                        col(AdminSession.expires_at) > now,
                        col(AdminSession.seen_at) > now - self.idle_s,
                    )
                )
            ).first()
        if row is None:
            self._cache.pop(key, None)
            return None
        if len(self._cache) >= CACHE_MAX:
            self._prune()
        self._cache[key] = _Cached(row.username, row.seen_at, row.expires_at, self.cache_clock())
        session = self.anonymous(sid)
        session.user = row.username
        session.flash = _flash_of(row.flash)
        session.secret_once = self._box.decrypt(row.secret_once) or None
        session.fresh = True
        return session

    async def _touch(self, key: str, now: int) -> bool:
        async with self._db() as db:
            result = await db.exec(
                update(AdminSession).where(col(AdminSession.id_hash) == key).values(seen_at=now)
            )
            await db.commit()
        return bool(result.rowcount)

    async def save(self, session: Session) -> None:
        """Store the waiting messages. A session read from the cache did not see the row's waiting
        messages, so its new ones are added to them rather than replacing them."""
        key = hash_key(session.sid)
        async with self._db() as db:
            row = await db.get(AdminSession, key)
            if row is None:
                return
            flash, secret = session.flash, session.secret_once
            if not session.fresh:
                flash = _flash_of(row.flash) + flash
                secret = secret or self._box.decrypt(row.secret_once) or None
            row.flash = orjson.dumps(flash).decode()
            row.secret_once = self._box.encrypt(secret or "")
            db.add(row)
            await db.commit()
        session.dirty = False

    async def delete(self, session: Session) -> None:
        key = hash_key(session.sid)
        async with self._db() as db:
            await db.exec(delete(AdminSession).where(col(AdminSession.id_hash) == key))
            await db.commit()
        self._cache.pop(key, None)
        await self.announce(key)

    async def delete_user(self, user: str) -> None:
        """Log `user` out everywhere: every browser, every replica."""
        async with self._db() as db:
            await db.exec(delete(AdminSession).where(col(AdminSession.username) == user))
            await db.commit()
        self.forget(None)
        await self.announce(None)

    def forget(self, key: str | None) -> None:
        """Drop the cached copy of one session (by digest), or of all of them."""
        if key is None:
            self._cache.clear()
        else:
            self._cache.pop(key, None)

    def _prune(self) -> None:
        limit = self.cache_clock() - self.cache_ttl_s
        self._cache = {k: v for k, v in self._cache.items() if v.fetched >= limit}
