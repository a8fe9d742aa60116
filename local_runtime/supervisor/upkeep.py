"""Keeping launched models healthy and memory free: restarts with backoff, idle and LRU unload.

A mixin of the Supervisor (core.py), split out to keep each file readable; it uses the
Supervisor's state and its start/stop/publish primitives, declared below.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from local_runtime.settings import RuntimeSettings
from local_runtime.supervisor.instance import Instance, Replica
from local_runtime.supervisor.options import SupervisorOptions
from local_runtime.supervisor.process import WorkerFailed

log = logging.getLogger("modelport.runtime")


class Upkeep:
    options: SupervisorOptions
    settings: RuntimeSettings
    _instances: dict[str, Instance]

    # --- provided by the Supervisor ------------------------------------------------------------
    @property
    def http(self) -> httpx.AsyncClient:
        raise NotImplementedError

    def _get(self, uid: str) -> Instance:
        raise NotImplementedError

    def _publish(self, inst: Instance) -> None:
        raise NotImplementedError

    async def _start_replica(self, inst: Instance, rep: Replica) -> None:
        raise NotImplementedError

    async def _stop_replica(self, rep: Replica) -> None:
        raise NotImplementedError

    # --- health and restarts -------------------------------------------------------------------
    def _watch(self, inst: Instance, rep: Replica) -> None:
        rep.watcher = asyncio.ensure_future(self._keep_running(inst, rep))
        rep.watcher.set_name(f"watch-{inst.uid}-{rep.index}")

    async def _keep_running(self, inst: Instance, rep: Replica) -> None:
        """Watch a ready replica; restart it with exponential backoff when it dies or hangs."""
        opts = self.options
        while True:
            assert rep.worker is not None
            reason = await rep.worker.watch(
                self.http,
                interval=opts.health_interval_s,
                health_limit_s=opts.health_timeout_s,
                hung_after=opts.hung_after,
                on_health=lambda h: setattr(rep, "health", h),
            )
            lived = time.time() - (rep.ready_since or time.time())
            rep.quick_failures = rep.quick_failures + 1 if lived < opts.stable_after_s else 1
            rep.restarts += 1
            rep.last_error = reason
            rep.status = "restarting"
            rep.ready.clear()
            rep.log.mark(f"replica failed: {reason}; restarting")
            log.warning("%s replica %d failed: %s", inst.uid, rep.index, reason)
            self._publish(inst)
            await rep.worker.kill()
            while True:
                if rep.quick_failures > opts.max_quick_failures:
                    rep.status = "error"
                    rep.next_restart_at = None
                    rep.last_error = (
                        f"gave up after {rep.quick_failures - 1} quick restarts; last error: "
                        f"{rep.last_error}"
                    )
                    rep.log.mark(rep.last_error)
                    self._publish(inst)
                    return
                delay = min(opts.backoff_cap_s, opts.backoff_base_s * 2 ** (rep.quick_failures - 1))
                rep.next_restart_at = time.time() + delay
                rep.status = "restarting"
                await asyncio.sleep(delay)
                try:
                    await self._start_replica(inst, rep)
                    break
                except WorkerFailed as exc:
                    rep.last_error = exc.message
                    rep.quick_failures += 1
                    rep.restarts += 1
            self._publish(inst)

    # --- idle unload ---------------------------------------------------------------------------
    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.idle_check_s)
            now = time.time()
            for inst in list(self._instances.values()):
                if (
                    inst.state == "ready"
                    and inst.keep_alive_s > 0
                    and now - inst.last_used >= inst.keep_alive_s
                    and not await self._busy(inst)
                ):
                    await self._unload(inst, f"idle for {inst.keep_alive_s:g}s")
            await self._make_room(keep=None)

    async def _busy(self, inst: Instance) -> bool:
        """Whether a replica is serving a request right now (asked fresh, not from the cache)."""
        for rep in inst.replicas:
            if rep.worker is not None and rep.worker.running:
                health = await rep.worker.health(self.http, self.options.health_timeout_s)
                if health is None or health.get("inflight", 0) > 0:
                    return True
        return False

    async def _make_room(self, keep: str | None) -> None:
        """Unload least recently used models while more than max_loaded_models are loaded."""
        limit = self.settings.max_loaded_models
        if limit <= 0:
            return
        loaded = [i for i in self._instances.values() if i.loaded]
        excess = len(loaded) - limit
        for inst in sorted(loaded, key=lambda i: i.last_used):
            if excess <= 0:
                break
            if inst.uid == keep or inst.state != "ready" or await self._busy(inst):
                continue
            await self._unload(inst, f"max_loaded_models={limit} reached")
            excess -= 1

    async def unload(self, uid: str) -> None:
        """Stop the workers of `uid` but keep it launched; the next request loads it again."""
        await self._unload(self._get(uid), "unloaded by the admin")

    async def _unload(self, inst: Instance, why: str) -> None:
        if inst.state != "ready" or inst.lock.locked():
            return
        async with inst.lock:
            inst.state = "unloading"
            for rep in inst.replicas:
                rep.log.mark(f"unloading: {why}")
            await asyncio.gather(*(self._stop_replica(rep) for rep in inst.replicas))
            for rep in inst.replicas:
                rep.status = "stopped"
                rep.quick_failures = 0
            inst.state = "unloaded"
            self._publish(inst)
            log.info("unloaded %s (%s)", inst.uid, why)
