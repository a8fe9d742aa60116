"""The supervisor: launch, terminate, watch, restart, unload idle models, restore after a restart.

Each launched UID runs as `replica` worker processes (local_runtime.worker). The supervisor knows
nothing of who routes to them: it reports each UID's routable replicas to its host through
`on_replicas` and keeps launches in the host's `LaunchStore` (ports.py), so it runs under the
gateway (`modelport serve`, via gateway.runtime_host), on a GPU node, or in a program of its own.

Methods the admin UI and API call: `launch`, `terminate`, `instances`, `instance`, `logs`,
`unload`, `load`, `models`. Everything runs on one event loop; nothing here is thread-safe, nor
needs to be. Starting and routing replicas is in replicas.py, health and idle unload in upkeep.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx

from local_runtime.catalog import Catalog
from local_runtime.resolve import LaunchError, resolve
from local_runtime.settings import RuntimeSettings
from local_runtime.spec import LaunchSpec, ResolvedSpec
from local_runtime.supervisor import placement
from local_runtime.supervisor.instance import Instance
from local_runtime.supervisor.options import (
    ReplicaUnavailable,
    SupervisorOptions,
    UidTaken,
    UnknownInstance,
)
from local_runtime.supervisor.packing import Packer
from local_runtime.supervisor.ports import LaunchStore, LocalModel, ReplicasChanged
from local_runtime.supervisor.replicas import Replicas, swallow

log = logging.getLogger("modelport.runtime")

UID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


class Supervisor(Replicas):
    def __init__(
        self,
        *,
        settings: RuntimeSettings,
        catalog: Catalog,
        store: LaunchStore,
        on_replicas: ReplicasChanged | None = None,
        options: SupervisorOptions | None = None,
        node: str = "",
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.on_replicas = on_replicas
        self.options = options or SupervisorOptions()
        self.node = node
        self.home = settings.home
        self.runtime_dir = settings.home / "runtime"
        self.logs_dir = settings.home / "logs"
        self._instances: dict[str, Instance] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        self._closing = False
        self.packer = Packer()  # GPU memory placed per UID (scale-out: several models per GPU)

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Restore persisted launches (they load in the background), start the idle timer."""
        # each worker launch gets its own key under this root (local_runtime.keys); without a
        # root from the host (a node's cluster secret, the host's secret key), a random one
        self._key_root = self.options.worker_key_root or secrets.token_hex(32)
        self._http = httpx.AsyncClient(trust_env=False)
        # The UIDs are registered (status "loading") before the server takes requests, so none
        # is "not found" while it loads; their loads go on in the background.
        await self._restore()
        self._spawn(self._idle_loop(), "runtime-idle")

    async def close(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after the grace) and withdraw the routes."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for inst in self._instances.values():
            if inst.load_task is not None:
                inst.load_task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(self._stop_instance(inst) for inst in self._instances.values()),
            return_exceptions=True,
        )
        for uid in list(self._instances):
            self._route(uid, [])
        if self._http is not None:
            await self._http.aclose()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("runtime task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("the supervisor is not started")
        return self._http

    # --- reads (UI, API) -----------------------------------------------------------------------
    def instances(self) -> list[dict[str, Any]]:
        """Every launched UID: spec, status, replicas (pid, port, rss, restarts, errors), timers."""
        now = time.time()
        return [inst.describe(now) for inst in self._instances.values()]

    def __contains__(self, uid: object) -> bool:
        return uid in self._instances

    def instance(self, uid: str) -> dict[str, Any]:
        return self._get(uid).describe()

    def logs(self, uid: str, lines: int = 200, replica: int | None = None) -> dict[str, list[str]]:
        """The last `lines` lines of each replica's log (or of one), keyed by replica index."""
        inst = self._get(uid)
        return {
            str(rep.index): rep.log.tail(lines)
            for rep in inst.replicas
            if replica is None or rep.index == replica
        }

    def models(self) -> dict[str, LocalModel]:
        """What each resolved UID is (for /v1/models and the FastGPT export, via the host)."""
        out: dict[str, LocalModel] = {}
        for uid, inst in self._instances.items():
            r = inst.resolved
            if r is None:
                continue
            family = self.catalog.get(r.model_name)
            out[uid] = LocalModel(
                uid=uid,
                model_name=r.model_name,
                model_type=r.model_type,
                abilities=tuple(r.abilities),
                context_length=r.context_length,
                dimensions=r.dimensions,
                max_tokens=r.max_tokens,
                languages=tuple(family.languages) if family else (),
                voices=tuple(r.voices),
                engine=r.engine,
                model_format=r.model_format,
                model_family=(family.model_family if family else None) or r.model_name,
                model_size_in_billions=r.model_size_in_billions,
                quantization=r.quantization,
            )
        return out

    def _get(self, uid: str) -> Instance:
        inst = self._instances.get(uid)
        if inst is None:
            raise UnknownInstance(uid)
        return inst

    # --- launch --------------------------------------------------------------------------------
    async def launch(
        self, spec: LaunchSpec, *, wait: bool = True, persist: bool = True
    ) -> dict[str, Any]:
        """Launch `spec` under its UID; with `wait`, return once every replica is ready.

        Raises UidTaken for a UID in use and LaunchError with the reason (resolution, placement,
        or the worker's own load error) for a launch that cannot go ahead; a failed launch leaves
        nothing behind. Without `wait` the launch goes on in the background and a failure stays
        visible as status "error" until the UID is terminated.
        """
        uid = spec.uid
        if not UID_RE.match(uid):
            raise LaunchError(
                f"model_uid {uid!r} is not usable: letters, digits, '.', '_' and '-', at most 128"
            )
        if uid in self._instances:
            raise UidTaken(
                f"model_uid {uid!r} is already launched; terminate it first or pick another uid"
            )
        keep = spec.keep_alive_s if spec.keep_alive_s is not None else self.settings.keep_alive_s
        inst = Instance(spec=spec, keep_alive_s=max(float(keep), 0.0))
        inst.progress = {"stage": "resolving"}
        self._instances[uid] = inst
        task = asyncio.ensure_future(self._first_load(inst, persist=persist, keep_failed=not wait))
        task.set_name(f"launch-{uid}")
        inst.load_task = task
        if not wait:
            task.add_done_callback(swallow)
            return inst.describe()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and not (current is not None and current.cancelling()):
                raise LaunchError(f"{uid!r} was terminated while it was launching") from None
            raise
        return inst.describe()

    async def _first_load(self, inst: Instance, *, persist: bool, keep_failed: bool) -> None:
        uid = inst.uid
        try:
            async with inst.lock:
                resolved = await asyncio.to_thread(
                    resolve,
                    inst.spec,
                    self.catalog,
                    home=self.home,
                    on_progress=lambda done, total: _progress(inst, "downloading", done, total),
                )
                gpus = placement.place(inst.spec, resolved, self.packer)
                inst.resolved = resolved
                inst.spec_path = self._write_spec(resolved)
                inst.replicas = [self._new_replica(inst, i, g) for i, g in enumerate(gpus)]
                await self._make_room(keep=uid)
                await self._start_all(inst)
                inst.state = "ready"
                inst.routable = True
                inst.last_used = time.time()
                self._publish(inst)
                for rep in inst.replicas:
                    self._watch(inst, rep)
            if persist:
                await self.store.save(
                    uid=uid, spec_json=inst.spec.model_dump_json(), node=self.node
                )
            log.info("launched %s (%d replica(s))", uid, len(inst.replicas))
        except LaunchError as exc:
            inst.state, inst.error = "error", exc.message
            self.packer.release(uid)
            if not keep_failed and self._instances.get(uid) is inst:
                del self._instances[uid]
                for rep in inst.replicas:  # no terminate will come to close them
                    rep.log.close()
            log.warning("launch of %s failed: %s", uid, exc.message)
            raise

    def _write_spec(self, resolved: ResolvedSpec) -> Path:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        path = self.runtime_dir / f"{resolved.uid}.json"
        path.write_text(resolved.model_dump_json(indent=2), encoding="utf-8")
        return path

    # --- terminate ------------------------------------------------------------------------------
    async def terminate(self, uid: str) -> None:
        """Stop every replica of `uid`, drop it from routing and from the persisted launches."""
        inst = self._get(uid)
        del self._instances[uid]
        self.packer.release(uid)
        self._route(uid, [])
        if inst.load_task is not None and not inst.load_task.done():
            inst.load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LaunchError, ReplicaUnavailable):
                await inst.load_task
        await self._stop_instance(inst)
        if inst.spec_path is not None:
            inst.spec_path.unlink(missing_ok=True)
        await self.store.delete(uid=uid)
        log.info("terminated %s", uid)

    # --- restore -------------------------------------------------------------------------------
    async def _restore(self) -> None:
        """Relaunch what was launched before the restart, in the background."""
        for row in await self.store.list(node=self.node):
            try:
                spec = LaunchSpec.model_validate_json(row.spec_json)
            except ValueError as exc:
                log.error("cannot restore %s: stored launch spec is invalid: %s", row.uid, exc)
                continue
            if spec.uid in self._instances:
                continue
            try:
                await self.launch(spec, wait=False, persist=False)
            except LaunchError as exc:
                log.error("cannot restore %s: %s", spec.uid, exc.message)


def _progress(inst: Instance, stage: str, done: int, total: int) -> None:
    inst.progress = {"stage": stage, "bytes_done": done, "bytes_total": total}
