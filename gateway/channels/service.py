"""ChannelService: every channel write the admin API, the UI, the importer and startup make.

Each write that changes what routes (create, update, delete, enable, disable, a test round that
revives auto-disabled channels) is followed by exactly one `routes_changed()` on the notifier,
so no surface reloads routes itself and none can forget to. Recording a probe's result or a
balance changes no route, so it announces nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.secrets import SecretBox
from gateway.changes import ChangeNotifier
from gateway.channels.balance import read_balance
from gateway.channels.probe import probe_model, probe_type, run_probe
from gateway.channels.routes import endpoint_for
from gateway.db.crud import channels as crud
from gateway.db.models import ChannelCreate, ChannelUpdate
from gateway.db.tables import Channel, ChannelStatus
from gateway.routing import HealthTracker
from gateway.security.upstream_urls import channel_url_problem
from gateway.settings import Settings
from gateway.upstreams.base import Upstream, redirect_refused
from gateway.upstreams.registry import CHANNEL_TYPES, normalise_base_url

TEST_CONCURRENCY = 4


class ChannelRefused(ValueError):
    """The request cannot be carried out; the message says what to change."""


@dataclass(slots=True)
class ChannelCheck:
    """One channel's probe, in the fields One API's test answer carries."""

    id: int
    name: str
    success: bool
    message: str
    time: float = 0.0
    model: str = ""
    type: str = ""


class ChannelService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        settings: Settings,
        upstreams: dict[str, Upstream],
        health: HealthTracker,
        notifier: ChangeNotifier,
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.settings = settings
        self.upstreams = upstreams
        self.health = health
        self.notifier = notifier

    def with_notifier(self, notifier: ChangeNotifier) -> ChannelService:
        """The same service announcing elsewhere (startup writes silently, then loads routes)."""
        return ChannelService(
            sessions=self.sessions,
            box=self.box,
            settings=self.settings,
            upstreams=self.upstreams,
            health=self.health,
            notifier=notifier,
        )

    # --- checks shared by every surface ---------------------------------------------------
    def check(self, data: ChannelCreate | ChannelUpdate) -> None:
        """A known, non-built-in type and a base URL the upstream allow-list accepts."""
        if data.type is not None and (data.type not in CHANNEL_TYPES or data.type == 0):
            raise ChannelRefused(
                f"unknown channel type {data.type}: GET /api/channel/types lists them"
            )
        if problem := channel_url_problem(data.base_url, self.settings.upstream_allow):
            raise ChannelRefused(problem)

    async def get(self, channel_id: int) -> Channel | None:
        """A channel an admin may act on (the built-in local channel is not one)."""
        async with self.sessions() as session:
            ch = await session.get(Channel, channel_id)
        return None if ch is None or ch.builtin else ch

    # --- writes that change routes --------------------------------------------------------
    async def create(self, data: ChannelCreate, *, checked: bool = True) -> list[Channel]:
        """One channel per key line (One API's batch add). `checked=False` is for the config
        file's channels, which the operator wrote (they were never held to `check`)."""
        if checked:
            self.check(data)
        async with self.sessions() as session:
            rows = await crud.create_channels(session, data=data, box=self.box)
        await self.notifier.routes_changed()
        return rows

    async def update(self, data: ChannelUpdate, *, checked: bool = True) -> Channel | None:
        if checked:
            self.check(data)
        async with self.sessions() as session:
            ch = await crud.update_channel(session, data=data, box=self.box)
        if ch is not None:
            await self.notifier.routes_changed()
        return ch

    async def enable(self, channel_id: int) -> Channel | None:
        return await self._set_status(channel_id, ChannelStatus.ENABLED)

    async def disable(self, channel_id: int) -> Channel | None:
        return await self._set_status(channel_id, ChannelStatus.MANUALLY_DISABLED)

    async def _set_status(self, channel_id: int, status: int) -> Channel | None:
        if await self.get(channel_id) is None:
            return None
        async with self.sessions() as session:
            ch = await crud.update_channel(
                session, data=ChannelUpdate(id=channel_id, status=status), box=self.box
            )
        await self.notifier.routes_changed()
        return ch

    async def delete(self, channel_id: int) -> bool:
        async with self.sessions() as session:
            deleted = await crud.delete_channel(session, channel_id=channel_id)
        if deleted:
            await self.notifier.routes_changed()
        return deleted

    async def delete_disabled(self) -> int:
        """One API's DeleteDisabledChannel: manually and automatically disabled ones."""
        async with self.sessions() as session:
            count = await crud.delete_disabled_channels(session)
        if count:
            await self.notifier.routes_changed()
        return count

    async def ensure(self, fields: dict[str, Any]) -> None:
        """Create the channel named `fields["name"]`, or bring it to `fields` (a channel the
        operator declared in the config file, so not held to `check`)."""
        async with self.sessions() as session:
            existing = (
                await session.exec(select(Channel).where(Channel.name == fields["name"]))
            ).first()
        if existing is None:
            await self.create(ChannelCreate(**fields), checked=False)
        else:
            assert existing.id is not None
            await self.update(ChannelUpdate(id=existing.id, **fields), checked=False)

    async def import_channels(
        self, items: Sequence[tuple[ChannelCreate, str, dict[str, int | float]]]
    ) -> list[Channel]:
        """Channels from One API (each already through `check`): each key kept whole (a newline
        in it is not a batch of keys here) and the history fields it brings; one announcement
        for the whole import."""
        rows: list[Channel] = []
        async with self.sessions() as session:
            for data, key, history in items:
                (ch,) = await crud.create_channels(
                    session, data=data.model_copy(update={"key": ""}), box=self.box
                )
                await crud.set_channel_fields(
                    session,
                    channel_id=ch.id or 0,
                    key_enc=self.box.encrypt(key.strip()),
                    **history,
                )
                rows.append(ch)
        if rows:
            await self.notifier.routes_changed()
        return rows

    # --- probes ---------------------------------------------------------------------------
    async def test(self, ch: Channel, model: str = "") -> ChannelCheck:
        """Probe `model` (default: the channel's test_model or first model) with the API its
        type calls, and record the time and error on the channel as One API does."""
        model = model or probe_model(ch)
        if not model:
            return ChannelCheck(
                ch.id or 0, ch.name, False, "the channel lists no models: add one, or pass ?model="
            )
        type_ = probe_type(model, orjson.loads(ch.model_types or "{}"))
        try:
            ep = endpoint_for(ch, self.box, self.settings)
        except ValueError as exc:  # a key that no longer decrypts
            return ChannelCheck(ch.id or 0, ch.name, False, str(exc), model=model, type=type_)
        result = await run_probe(self.upstreams[ep.kind], ep, model, type_)
        async with self.sessions() as session:
            await crud.set_channel_fields(
                session,
                channel_id=ch.id or 0,
                test_time=int(time.time()),
                response_time=int(result.seconds * 1000),
                last_error=result.message[:500],
            )
        if result.success:
            self.health.success(ep.id)
        return ChannelCheck(
            ch.id or 0,
            ch.name,
            result.success,
            result.message,
            round(result.seconds, 3),
            model,
            type_,
        )

    async def test_all(self, scope: str = "all") -> list[ChannelCheck]:
        """Probe every channel (`scope="disabled"`: only disabled ones), a few at a time; an
        auto-disabled channel that passes is enabled again, as One API's
        monitor.ShouldEnableChannel does."""
        async with self.sessions() as session:
            rows = [c for c in await crud.all_channels(session) if not c.builtin]
        if scope == "disabled":
            rows = [c for c in rows if c.status != ChannelStatus.ENABLED]
        gate = asyncio.Semaphore(TEST_CONCURRENCY)

        async def one(ch: Channel) -> ChannelCheck:
            async with gate:
                return await self.test(ch)

        checks = list(await asyncio.gather(*(one(c) for c in rows)))
        revived = [
            c.id
            for c, ch in zip(checks, rows, strict=True)
            if c.success and ch.status == ChannelStatus.AUTO_DISABLED
        ]
        async with self.sessions() as session:
            for channel_id in revived:
                await crud.set_channel_fields(
                    session, channel_id=channel_id, status=ChannelStatus.ENABLED
                )
        if revived:
            await self.notifier.routes_changed()
        return checks

    async def update_balance(self, ch: Channel) -> float:
        """Ask the provider (gateway.channels.balance) and store the answer on the channel. The
        stored URL is checked again, as before every relayed request: a row written before the
        check (or by hand) must not send its key to a metadata address."""
        if problem := channel_url_problem(ch.base_url, self.settings.upstream_allow):
            raise ChannelRefused(problem)
        balance = await read_balance(ch.type, ch.base_url, self.box.decrypt(ch.key_enc))
        async with self.sessions() as session:
            await crud.set_channel_fields(session, channel_id=ch.id or 0, balance=balance)
        return balance

    async def fetch_models(
        self, *, type_: int, base_url: str, key: str = "", channel_id: int | None = None
    ) -> list[str]:
        """GET {base}/models with the entered key, server side (so the key never reaches another
        origin from a browser). With no key and a saved channel, its stored key is used, and
        then only towards its stored base URL: a stored key is never sent to a typed address."""
        try:
            base = normalise_base_url(type_, base_url)
        except ValueError as exc:
            raise ChannelRefused(str(exc)) from exc
        if not base.startswith(("http://", "https://")):
            raise ChannelRefused("enter an http(s) base URL first")
        if problem := channel_url_problem(base, self.settings.upstream_allow):
            raise ChannelRefused(problem)
        if not key and channel_id is not None:
            ch = await self.get(channel_id)
            if ch is not None and ch.base_url != base:
                raise ChannelRefused(
                    "the saved key is only sent to the saved base URL: save the new URL first, "
                    "or enter the key again"
                )
            key = self.box.decrypt(ch.key_enc) if ch else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        failed = f"could not list models at {base}/models"
        try:
            async with httpx.AsyncClient(timeout=15, follow_redirects=False) as client:
                resp = await client.get(f"{base}/models", headers=headers)
        except httpx.HTTPError as exc:
            raise ChannelRefused(f"{failed}: {exc}") from exc
        if resp.is_redirect:  # the key goes to the entered URL only, never where it points
            raise ChannelRefused(redirect_refused(resp.status_code))
        try:
            payload: Any = resp.json()
        except ValueError as exc:
            raise ChannelRefused(f"{failed}: {exc}") from exc
        if resp.status_code >= 400 or not isinstance(payload, dict):
            raise ChannelRefused(
                f"{base}/models answered HTTP {resp.status_code}: {resp.text[:200]}"
            )
        return [
            str(m.get("id"))
            for m in payload.get("data") or []
            if isinstance(m, dict) and m.get("id")
        ]
