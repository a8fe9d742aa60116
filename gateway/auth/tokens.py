"""Who is calling /v1/*: API token lookup (cached by key digest) and the checks One API makes.

A token is looked up by the SHA-256 of the presented key, cached for `ttl` seconds; admin changes
call `invalidate()` (and, with Redis, every replica is told). Quota is not checked here: the
atomic reservation in billing is the check, so the cache can never let a request overspend.
Unknown keys are counted per client address before their lookup (gateway.auth.guard): key guessing
and random-key floods get 429, while a known key never touches the counter.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.guard import API_KEY_FAILURES, AttemptLimiter, address_key
from gateway.auth.keys import canonical_key, hash_key, parse_authorization, same_digest
from gateway.db.crud.tokens import get_by_hash
from gateway.db.models import split_csv
from gateway.db.tables import Token, TokenStatus
from gateway.errors import (
    AuthenticationFailed,
    PermissionDenied,
    QuotaExceeded,
    Unavailable,
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Caller:
    token_id: int
    name: str
    group: str = "default"
    unlimited: bool = True
    models: frozenset[str] | None = None  # None: every model the group reaches
    subnets: tuple[IPNetwork, ...] = ()
    rpm: int = 0
    tpm: int = 0
    max_concurrency: int = 0
    log_content: bool = False
    is_admin: bool = False

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


ADMIN_CALLER = Caller(token_id=0, name="admin", is_admin=True)


@dataclass(slots=True)
class _Entry:
    caller: Caller | None
    status: int
    expired_time: int
    exhausted: bool
    fetched: float


class TokenAuthenticator:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        admin_hash: Callable[[], str | None],
        ttl: float = 30.0,
        guard: AttemptLimiter | None = None,
    ) -> None:
        self._sessions = sessions
        self._admin_hash = admin_hash
        self._ttl = ttl
        self.clock: Callable[[], float] = time.monotonic  # ages cached keys; tests set it
        self._cache: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Task[_Entry]] = {}
        self.guard = guard or AttemptLimiter(limit=API_KEY_FAILURES)

    def invalidate(self) -> None:
        self._cache = {}

    async def authenticate(self, authorization: str | None, client_ip: str | None) -> Caller:
        key = parse_authorization(authorization)
        if key is None:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer sk-...' (create a token in the "
                "admin UI or with `modelport token create`)"
            )
        digest = hash_key(key)
        admin = self._admin_hash()
        if admin and same_digest(digest, admin):
            return ADMIN_CALLER
        canonical = canonical_key(key)
        if canonical != key:  # a key sent without its sk- prefix: hashed as stored
            digest = hash_key(canonical)
        entry = self._cache.get(digest)
        now = self.clock()
        if entry is not None and entry.caller is not None and now - entry.fetched <= self._ttl:
            return self._check(entry, client_ip)  # the hot path: a known key, no counting
        return await self._guarded_load(digest, entry, now, client_ip)

    async def _guarded_load(
        self, digest: str, entry: _Entry | None, now: float, client_ip: str | None
    ) -> Caller:
        """An unknown (or stale) key: the attempt is counted per client address before the
        lookup, and becomes a failure when no token has this key.

        Concurrent requests with the same key share one lookup and one count: a burst from one
        address on a cold cache (a restart, or every `ttl`) was otherwise counted as that many
        guesses in flight and refused with "too many invalid API keys"."""
        shared = self._loading.get(digest)
        if shared is not None:
            return self._check(await asyncio.shield(shared), client_ip)
        keys = (address_key(client_ip),)
        self.guard.acquire_or_raise(keys, "invalid API keys", client_ip)
        unknown = False
        try:
            if entry is None or now - entry.fetched > self._ttl:
                task = asyncio.ensure_future(self._load(digest, now))
                self._loading[digest] = task
                task.add_done_callback(lambda _: self._loading.pop(digest, None))
                entry = await asyncio.shield(task)
            unknown = entry.caller is None
        finally:
            self.guard.release(keys, failed=unknown)
        return self._check(entry, client_ip)

    async def _load(self, digest: str, now: float) -> _Entry:
        try:
            async with self._sessions() as session:
                row = await get_by_hash(session, digest)
        except (SQLAlchemyError, OSError) as exc:
            stale = self._cache.get(digest)
            if stale is not None:  # database briefly away: a known token keeps working
                return stale
            raise Unavailable(
                "the database is unreachable, so the API key cannot be checked; retry shortly",
                code="database_unavailable",
                headers={"Retry-After": "2"},
            ) from exc
        entry = _Entry(
            caller=_caller(row) if row else None,
            status=row.status if row else 0,
            expired_time=row.expired_time if row else -1,
            exhausted=bool(row and not row.unlimited_quota and row.remain_quota <= 0),
            fetched=now,
        )
        if len(self._cache) > 100_000:  # bounded: a flood of random keys cannot grow it forever
            self._cache = {}
        self._cache[digest] = entry
        return entry

    @staticmethod
    def _check(entry: _Entry, client_ip: str | None) -> Caller:
        caller = entry.caller
        if caller is None:
            raise AuthenticationFailed("invalid API key: check the key or create a new token")
        if entry.status == TokenStatus.DISABLED:
            raise AuthenticationFailed(f"token '{caller.name}' is disabled: enable it first")
        if entry.status == TokenStatus.EXPIRED or (
            entry.expired_time != -1 and entry.expired_time < time.time()
        ):
            raise AuthenticationFailed(
                f"token '{caller.name}' has expired: extend its expiry or create a new token",
                code="token_expired",
            )
        if entry.status == TokenStatus.EXHAUSTED or entry.exhausted:
            raise QuotaExceeded(f"token '{caller.name}' has no quota left: add quota to it")
        if caller.subnets and not _ip_in(client_ip, caller.subnets):
            raise PermissionDenied(
                f"token '{caller.name}' may not be used from {client_ip}: allowed subnets are "
                + ", ".join(str(n) for n in caller.subnets),
                code="ip_not_allowed",
            )
        return caller


def _ip_in(ip: str | None, nets: tuple[IPNetwork, ...]) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in n for n in nets)


def _caller(row: Token) -> Caller:
    models = split_csv(row.models)
    return Caller(
        token_id=row.id or 0,
        name=row.name,
        group=row.group or "default",
        unlimited=row.unlimited_quota,
        models=frozenset(models) if models else None,
        subnets=tuple(ipaddress.ip_network(c, strict=False) for c in split_csv(row.subnet)),
        rpm=row.rpm,
        tpm=row.tpm,
        max_concurrency=row.max_concurrency,
        log_content=row.log_content,
    )
