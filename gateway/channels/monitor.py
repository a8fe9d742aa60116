"""Channel health over time: auto-disable on credential/billing errors, periodic re-tests.

When an upstream refuses a channel's key or billing (dispatch decides from the status and the
structured error code only: never from message text, which callers can fill), the channel leaves
routing at once and is stored as auto-disabled (status 3) with the reason. Every
`channel_test_interval_s` the monitor tests each auto-disabled channel with the API that fits
its model's type (chat, embeddings, rerank, audio, images: gateway.channels.probe) and re-enables
the ones that pass. Manually disabled channels (status 2) are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from gateway.channels.probe import ProbeResult, probe_model, probe_type, run_probe
from gateway.channels.routes import endpoint_for
from gateway.db.crud.channels import set_channel_fields
from gateway.db.tables import Channel, ChannelStatus
from gateway.upstreams.base import Endpoint

log = logging.getLogger("modelport.monitor")


class ChannelMonitor:
    def __init__(
        self,
        *,
        sessions: Any,
        routes: Any,
        health: Any,
        upstreams: dict[str, Any],
        box: Any,
        settings: Any,
        reload_routes: Callable[[], Awaitable[None]],
    ) -> None:
        self.sessions = sessions
        self.routes = routes
        self.health = health
        self.upstreams = upstreams
        self.box = box
        self.settings = settings
        self.reload_routes = reload_routes
        self.interval = settings.channel_test_interval_s
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._disabling: set[int] = set()
        self.disabled_total = 0
        self.enabled_total = 0

    # --- auto-disable (called synchronously from dispatch) ---------------------------------
    def disable(self, ep: Endpoint, reason: str) -> None:
        if ep.channel_id in self._disabling:
            return
        self._disabling.add(ep.channel_id)
        self.routes.drop_channel(ep.channel_id)
        log.warning(
            "channel auto-disabled",
            extra={"channel": ep.channel_name, "channel_id": ep.channel_id, "reason": reason},
        )
        task = asyncio.get_running_loop().create_task(self._store_disabled(ep, reason))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store_disabled(self, ep: Endpoint, reason: str) -> None:
        try:
            for attempt in range(5):
                try:
                    async with self.sessions() as session:
                        ch = await session.get(Channel, ep.channel_id)
                        if ch is None or ch.status != ChannelStatus.ENABLED:
                            return
                        await set_channel_fields(
                            session,
                            channel_id=ep.channel_id,
                            status=ChannelStatus.AUTO_DISABLED,
                            last_error=f"auto-disabled: {reason}"[:500],
                        )
                    self.disabled_total += 1
                    return
                except SQLAlchemyError as exc:
                    log.warning("cannot store auto-disable (attempt %d): %s", attempt + 1, exc)
                    await asyncio.sleep(1 + attempt)
        finally:
            self._disabling.discard(ep.channel_id)

    # --- periodic re-tests -----------------------------------------------------------------
    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="channel-monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.retest_disabled()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("channel re-test round failed: %s", exc)

    async def retest_disabled(self) -> dict[int, ProbeResult]:
        """Test every auto-disabled channel once; re-enable those that pass."""
        async with self.sessions() as session:
            rows = (
                await session.exec(
                    select(Channel).where(col(Channel.status) == ChannelStatus.AUTO_DISABLED)
                )
            ).all()
        results: dict[int, ProbeResult] = {}
        for ch in rows:
            result = await self._test(ch)
            if result is None or ch.id is None:
                continue
            results[ch.id] = result
            fields: dict[str, Any] = {
                "test_time": int(time.time()),
                "response_time": int(result.seconds * 1000),
            }
            if result.success:
                fields.update(status=ChannelStatus.ENABLED, last_error="")
            else:
                fields["last_error"] = f"auto-disabled; last test: {result.message}"[:500]
            async with self.sessions() as session:
                await set_channel_fields(session, channel_id=ch.id, **fields)
            if result.success:
                self.enabled_total += 1
                self.health.success(endpoint_for(ch, self.box, self.settings).id)
                log.info("channel re-enabled after a passing test", extra={"channel": ch.name})
        if any(r.success for r in results.values()):
            await self.reload_routes()
        return results

    async def _test(self, ch: Channel) -> ProbeResult | None:
        model = probe_model(ch)
        if not model:
            return None
        try:
            ep = endpoint_for(ch, self.box, self.settings)
        except ValueError as exc:  # undecryptable key: stays disabled, says why
            return ProbeResult(False, str(exc), 0.0, model)
        upstream = self.upstreams.get(ep.kind)
        if upstream is None:
            return None
        return await run_probe(upstream, ep, model, probe_type(model, ep.model_types))

    def circuit_states(self) -> dict[str, tuple[str, int]]:
        return self.health.snapshot()
