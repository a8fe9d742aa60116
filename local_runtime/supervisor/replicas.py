"""Starting, stopping and routing a UID's replicas: the worker side of the Supervisor.

A mixin of the Supervisor (core.py), split out to keep each file readable. A ready replica is
reported to the host (`on_replicas`) as a `ReplicaAddress`; its `prepare` hook, awaited by the
router before each request, is where the supervisor learns that a model is used (idle timer, LRU)
and where an unloaded model is started again: concurrent requests all wait on the same load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from local_runtime.keys import WORKER_SECRET_ENV, worker_key
from local_runtime.resolve import LaunchError
from local_runtime.supervisor import placement
from local_runtime.supervisor.environ import worker_environ
from local_runtime.supervisor.instance import Instance, Replica
from local_runtime.supervisor.logs import BoundedLog
from local_runtime.supervisor.options import ReplicaUnavailable
from local_runtime.supervisor.ports import ReplicaAddress, ReplicasChanged
from local_runtime.supervisor.process import WorkerFailed, WorkerProcess, free_port, port_is_free
from local_runtime.supervisor.upkeep import Upkeep

log = logging.getLogger("modelport.runtime")

PORT_TAKEN = "address already in use"  # in uvicorn's bind error, which the exit reason quotes
PORT_ATTEMPTS = 3


class Replicas(Upkeep):
    home: Path
    logs_dir: Path
    node: str
    on_replicas: ReplicasChanged | None
    _key_root: str

    # --- starting and stopping -----------------------------------------------------------------
    def _new_replica(self, inst: Instance, index: int, gpus: list[int] | None) -> Replica:
        port = free_port()
        rep = Replica(
            index=index,
            port=port,
            gpus=gpus,
            address=ReplicaAddress(
                uid=inst.uid,
                index=index,
                base_url=f"http://127.0.0.1:{port}/v1",
                first_byte_timeout_s=inst.spec.first_byte_timeout_s
                or self.settings.local_first_byte_timeout_s,
            ),
            log=BoundedLog(self.logs_dir / f"{inst.uid}-{index}.log", self.options.log_max_bytes),
        )
        rep.address.prepare = self._prepare_hook(inst, rep)
        return rep

    def _env(self, rep: Replica) -> dict[str, str]:
        env = worker_environ(os.environ)
        env.update(
            {
                "MODELPORT_HOME": str(self.home),
                "MODELPORT_FILES_DIR": str(self.settings.files_dir),
                "MODELPORT_PUBLIC_URL": self.settings.public_url,
                "CUDA_VISIBLE_DEVICES": placement.visible_devices(rep.gpus),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.options.worker_env)
        env.pop(WORKER_SECRET_ENV, None)
        if rep.key:
            env[WORKER_SECRET_ENV] = rep.key
        return env

    def _new_key(self, rep: Replica) -> None:
        """A fresh key for this start of the replica: a key seen by anyone (a captured request)
        stops working when the worker restarts, and opens no other worker."""
        if not self.options.worker_keys:
            rep.set_key("", None)
            return
        key_id = secrets.token_hex(8)
        rep.set_key(key_id, worker_key(self._key_root, self.node, key_id))

    async def _start_all(self, inst: Instance) -> None:
        """Start every replica at once; if one fails, stop them all and raise its reason."""
        inst.state = "loading"
        inst.progress = {"stage": "loading", "replicas_ready": 0, "replicas": len(inst.replicas)}
        results = await asyncio.gather(
            *(self._start_replica(inst, rep) for rep in inst.replicas), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if not failures:
            inst.progress = {}
            return
        await asyncio.gather(*(self._stop_replica(rep) for rep in inst.replicas))
        unexpected = [f for f in failures if not isinstance(f, WorkerFailed)]
        if unexpected:
            raise unexpected[0]
        message = "; ".join(
            dict.fromkeys(f.message for f in failures if isinstance(f, WorkerFailed))
        )
        raise LaunchError(f"{inst.uid!r} failed to start: {message}")

    async def _start_replica(self, inst: Instance, rep: Replica) -> None:
        """Spawn the worker and wait for ready; WorkerFailed (worker stopped) otherwise.

        A free port can be taken between choosing it and the worker's bind (an outgoing
        connection's ephemeral port, another server): that start is retried on a new port."""
        for attempt in range(PORT_ATTEMPTS):
            try:
                await self._start_replica_once(inst, rep)
                return
            except WorkerFailed as exc:
                if PORT_TAKEN not in exc.message or attempt == PORT_ATTEMPTS - 1:
                    raise
                log.warning(
                    "%s replica %d: port %d was taken; retrying", inst.uid, rep.index, rep.port
                )
                rep.set_port(free_port())

    async def _start_replica_once(self, inst: Instance, rep: Replica) -> None:
        assert inst.spec_path is not None
        if not port_is_free(rep.port):
            rep.set_port(free_port())
        rep.status = "loading"
        self._new_key(rep)
        rep.worker = WorkerProcess(
            spec_path=inst.spec_path,
            port=rep.port,
            key=rep.key,
            env=self._env(rep),
            log=rep.log,
            error_exit_grace_s=self.options.error_exit_grace_s,
            host=self.options.worker_host,
        )
        t0 = time.monotonic()
        try:
            await rep.worker.start()
            health = await rep.worker.wait_ready(
                self.http,
                limit_s=self.options.ready_timeout_s,
                on_health=lambda h: _note_loading(inst, rep, h, t0),
            )
        except WorkerFailed as exc:
            await rep.worker.kill()
            rep.status, rep.last_error = "stopped", exc.message
            raise
        except BaseException:
            await rep.worker.kill()
            rep.status = "stopped"
            raise
        rep.health = health
        rep.status = "ready"
        rep.ready_since = time.time()
        rep.next_restart_at = None
        rep.ready.set()
        if inst.progress.get("stage") == "loading":
            inst.progress["replicas_ready"] = sum(r.status == "ready" for r in inst.replicas)

    async def _stop_replica(self, rep: Replica) -> None:
        if rep.watcher is not None and rep.watcher is not asyncio.current_task():
            rep.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rep.watcher
        rep.watcher = None
        rep.ready.clear()
        if rep.worker is not None:
            await rep.worker.stop(self.options.stop_grace_s)
        if rep.status != "error":
            rep.status = "stopped"

    async def _stop_instance(self, inst: Instance) -> None:
        await asyncio.gather(*(self._stop_replica(rep) for rep in inst.replicas))
        for rep in inst.replicas:
            rep.log.close()

    # --- routing -------------------------------------------------------------------------------
    def _route(self, uid: str, addresses: list[ReplicaAddress]) -> None:
        if self.on_replicas is not None:
            self.on_replicas(uid, addresses)

    def _publish(self, inst: Instance) -> None:
        """Route to the ready replicas; when none is ready, to those that may be again (their
        prepare waits or reloads). Replicas that gave up are not routed: requests for a UID
        with no other replica get the router's answer saying why (`pending`), not a 502."""
        if self._instances.get(inst.uid) is not inst or not inst.routable:
            return
        ready = [r.address for r in inst.replicas if r.status == "ready"]
        alive = [r.address for r in inst.replicas if r.status != "error"]
        self._route(inst.uid, ready or alive)

    def _prepare_hook(self, inst: Instance, rep: Replica) -> Callable[[], Awaitable[None]]:
        async def prepare() -> None:
            inst.last_used = time.time()
            rep.requests += 1
            if rep.status == "ready" and inst.state == "ready":
                return
            await self._ensure_ready(inst, rep)
            inst.last_used = time.time()  # idle time counts from when it could serve

        return prepare

    async def _ensure_ready(self, inst: Instance, rep: Replica) -> None:
        """Make `rep` ready for a request, or raise ReplicaUnavailable saying why not."""
        if self._instances.get(inst.uid) is not inst:
            raise ReplicaUnavailable(f"model {inst.uid!r} was terminated")
        if inst.state in ("unloaded", "unloading") and (
            inst.load_task is None or inst.load_task.done()
        ):
            inst.load_task = asyncio.ensure_future(self._reload(inst))
            inst.load_task.set_name(f"reload-{inst.uid}")
            inst.load_task.add_done_callback(swallow)
        if inst.load_task is not None and not inst.load_task.done():
            try:
                await asyncio.shield(inst.load_task)
            except LaunchError as exc:
                raise ReplicaUnavailable(exc.message) from None
        deadline = time.monotonic() + self.options.ready_timeout_s
        while rep.status != "ready":
            if inst.state == "error" or rep.status == "error":
                raise ReplicaUnavailable(
                    f"model {inst.uid!r} is not running: {inst.error or rep.last_error}"
                )
            if any(r.status == "ready" for r in inst.replicas if r is not rep):
                raise ReplicaUnavailable(f"replica {rep.index} of {inst.uid!r} is restarting")
            if time.monotonic() > deadline or inst.state != "ready":
                raise ReplicaUnavailable(
                    f"model {inst.uid!r} is not ready ({inst.status}): {rep.last_error}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rep.ready.wait(), 1.0)

    async def load(self, uid: str) -> None:
        """Start an unloaded model now (what a request would do); returns when it is ready."""
        inst = self._get(uid)
        if inst.replicas:
            await self._ensure_ready(inst, inst.replicas[0])

    async def _reload(self, inst: Instance) -> None:
        async with inst.lock:
            if inst.state != "unloaded":
                return
            inst.loading_since = time.time()
            try:
                await self._make_room(keep=inst.uid)
                await self._start_all(inst)
            except LaunchError as exc:
                inst.state, inst.error = "unloaded", exc.message
                raise ReplicaUnavailable(f"model {inst.uid!r} could not be loaded: {exc}") from None
            inst.state, inst.error = "ready", None
            self._publish(inst)
            for rep in inst.replicas:
                self._watch(inst, rep)
            log.info("reloaded %s", inst.uid)


def swallow(task: asyncio.Task[Any]) -> None:
    """Retrieve a background load's exception: its reason is already in the instance state."""
    if not task.cancelled():
        task.exception()


def _note_loading(inst: Instance, rep: Replica, health: dict[str, Any], t0: float) -> None:
    rep.health = health
    if inst.progress.get("stage") == "loading":
        inst.progress["elapsed_s"] = round(time.monotonic() - t0, 1)
