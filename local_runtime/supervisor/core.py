"""The supervisor: launch, terminate, watch, restart, unload idle models, restore after a restart.

Each launched UID runs as `replica` worker processes (local_runtime.worker). A ready replica is one
`Endpoint` in the gateway's route table, so the relay serves local models exactly like remote
channels. The endpoint's `prepare` hook (awaited by the relay before each request) is where the
supervisor learns that a model is used (idle timer, LRU) and where an unloaded model is started
again: concurrent requests all wait on the same load.

Methods the admin UI and API call: `launch`, `terminate`, `instances`, `instance`, `logs`,
`unload`, `load`, `served_models`. Everything runs on the gateway's event loop; nothing here is
thread-safe, nor needs to be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.cluster.secret import WORKER_SECRET_ENV, worker_key
from gateway.db.crud import instances as crud
from gateway.db.crud.channels import ensure_local_channel
from gateway.model_info import ServedModel
from gateway.model_kinds import local_kind
from gateway.routing import RouteTable
from gateway.settings import Settings
from gateway.upstreams.base import Endpoint, Timeouts, UpstreamUnavailable
from local_runtime.catalog import Catalog
from local_runtime.resolve import LaunchError, resolve
from local_runtime.spec import LaunchSpec, ResolvedSpec
from local_runtime.supervisor import placement
from local_runtime.supervisor.environ import worker_environ
from local_runtime.supervisor.instance import Instance, Replica
from local_runtime.supervisor.logs import BoundedLog
from local_runtime.supervisor.options import SupervisorOptions, UidTaken, UnknownInstance
from local_runtime.supervisor.packing import Packer
from local_runtime.supervisor.process import WorkerFailed, WorkerProcess, free_port, port_is_free
from local_runtime.supervisor.upkeep import Upkeep

log = logging.getLogger("modelport.runtime")

UID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")
PASSTHROUGH_ENV = ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HOME", "MODELSCOPE_CACHE")
PORT_TAKEN = "address already in use"  # in uvicorn's bind error, which the exit reason quotes
PORT_ATTEMPTS = 3


SessionFactory = Callable[[], Any]  # async_sessionmaker: `async with sessions() as session`


class Supervisor(Upkeep):
    def __init__(
        self,
        *,
        settings: Settings,
        catalog: Catalog,
        routes: RouteTable,
        sessions: SessionFactory,
        options: SupervisorOptions | None = None,
        node: str = "",
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.routes = routes
        self.sessions = sessions
        self.options = options or SupervisorOptions()
        self.node = node
        self.home = settings.home
        self.runtime_dir = settings.home / "runtime"
        self.logs_dir = settings.home / "logs"
        self._instances: dict[str, Instance] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        self._channel_id = 0
        self._closing = False
        self.packer = Packer()  # GPU memory placed per UID (scale-out: several models per GPU)

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Find the local channel, then restore persisted launches (they load in the background)."""
        # each worker launch gets its own key under this root (gateway.cluster.secret); without
        # a root from the gateway (a node's cluster secret, the host's secret key), a random one
        self._key_root = self.options.worker_key_root or secrets.token_hex(32)
        self._http = httpx.AsyncClient(trust_env=False)
        async with self.sessions() as session:
            self._channel_id = (await ensure_local_channel(session)).id or 0
        # The UIDs are registered (status "loading") before the server takes requests, so none
        # is "not found" while it loads; their loads go on in the background.
        await self._restore()
        self._spawn(self._idle_loop(), "runtime-idle")

    async def close(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after the grace) and forget the routes."""
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
            self.routes.set_local(uid, [])
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

    def served_models(self) -> dict[str, ServedModel]:
        """What /v1/models and the FastGPT export know about local UIDs."""
        out: dict[str, ServedModel] = {}
        for uid, inst in self._instances.items():
            r = inst.resolved
            if r is None:
                continue
            family = self.catalog.get(r.model_name)
            out[uid] = ServedModel(
                id=uid,
                kind=local_kind(r.model_type, r.abilities),
                source="local",
                display_name=r.model_name,
                abilities=list(r.abilities),
                context_length=r.context_length,
                dimensions=r.dimensions,
                max_input_tokens=r.max_tokens,
                languages=list(family.languages) if family else [],
                voices=list(r.voices),
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
            task.add_done_callback(_swallow)
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
                await self._save(inst.spec)
            log.info("launched %s (%d replica(s))", uid, len(inst.replicas))
        except LaunchError as exc:
            inst.state, inst.error = "error", exc.message
            self.packer.release(uid)
            if not keep_failed and self._instances.get(uid) is inst:
                del self._instances[uid]
            log.warning("launch of %s failed: %s", uid, exc.message)
            raise

    def _write_spec(self, resolved: ResolvedSpec) -> Path:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        path = self.runtime_dir / f"{resolved.uid}.json"
        path.write_text(resolved.model_dump_json(indent=2), encoding="utf-8")
        return path

    def _new_replica(self, inst: Instance, index: int, gpus: list[int] | None) -> Replica:
        port = free_port()
        rep = Replica(
            index=index,
            port=port,
            gpus=gpus,
            endpoint=Endpoint(
                channel_id=self._channel_id,
                channel_name="local",
                kind="local",
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key=None,
                config={"stream_usage": True},
                # a hung worker (SIGSTOP, a wedged engine) fails over after this, not after the
                # health checks notice it; the gateway's circuit then skips it at once
                timeouts=Timeouts(
                    first_byte=inst.spec.first_byte_timeout_s
                    or self.settings.local_first_byte_timeout_s
                ),
            ),
            log=BoundedLog(self.logs_dir / f"{inst.uid}-{index}.log", self.options.log_max_bytes),
        )
        rep.endpoint.prepare = self._prepare_hook(inst, rep)
        return rep

    def _env(self, rep: Replica) -> dict[str, str]:
        env = worker_environ(os.environ)
        env.update(
            {
                "MODELPORT_HOME": str(self.home),
                "MODELPORT_FILES_DIR": str(self.settings.files_dir),
                "MODELPORT_PUBLIC_URL": self.settings.base_url,
                "CUDA_VISIBLE_DEVICES": placement.visible_devices(rep.gpus),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name in PASSTHROUGH_ENV:
            if name in os.environ:
                env[name] = os.environ[name]
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

    # --- terminate ------------------------------------------------------------------------------
    async def terminate(self, uid: str) -> None:
        """Stop every replica of `uid`, drop it from routing and from the persisted launches."""
        inst = self._get(uid)
        del self._instances[uid]
        self.packer.release(uid)
        self.routes.set_local(uid, [])
        if inst.load_task is not None and not inst.load_task.done():
            inst.load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LaunchError, UpstreamUnavailable):
                await inst.load_task
        await self._stop_instance(inst)
        if inst.spec_path is not None:
            inst.spec_path.unlink(missing_ok=True)
        async with self.sessions() as session:
            await crud.delete_instance(session, uid=uid)
        log.info("terminated %s", uid)

    async def _save(self, spec: LaunchSpec) -> None:
        async with self.sessions() as session:
            await crud.save_instance(
                session, uid=spec.uid, spec_json=spec.model_dump_json(), node=self.node
            )

    # --- routing -------------------------------------------------------------------------------
    def _publish(self, inst: Instance) -> None:
        """Route to the ready replicas; when none is ready, to those that may be again (their
        prepare waits or reloads). Replicas that gave up are not routed: requests for a UID
        with no other replica get the gateway's 503 saying why (`pending`), not a 502."""
        if self._instances.get(inst.uid) is not inst or not inst.routable:
            return
        ready = [r.endpoint for r in inst.replicas if r.status == "ready"]
        alive = [r.endpoint for r in inst.replicas if r.status != "error"]
        self.routes.set_local(inst.uid, ready or alive)

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
        """Make `rep` ready for a request, or raise UpstreamUnavailable saying why not."""
        if self._instances.get(inst.uid) is not inst:
            raise UpstreamUnavailable(f"model {inst.uid!r} was terminated")
        if inst.state in ("unloaded", "unloading") and (
            inst.load_task is None or inst.load_task.done()
        ):
            inst.load_task = asyncio.ensure_future(self._reload(inst))
            inst.load_task.set_name(f"reload-{inst.uid}")
            inst.load_task.add_done_callback(_swallow)
        if inst.load_task is not None and not inst.load_task.done():
            try:
                await asyncio.shield(inst.load_task)
            except LaunchError as exc:
                raise UpstreamUnavailable(exc.message) from None
        deadline = time.monotonic() + self.options.ready_timeout_s
        while rep.status != "ready":
            if inst.state == "error" or rep.status == "error":
                raise UpstreamUnavailable(
                    f"model {inst.uid!r} is not running: {inst.error or rep.last_error}"
                )
            if any(r.status == "ready" for r in inst.replicas if r is not rep):
                raise UpstreamUnavailable(f"replica {rep.index} of {inst.uid!r} is restarting")
            if time.monotonic() > deadline or inst.state != "ready":
                raise UpstreamUnavailable(
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
                raise UpstreamUnavailable(
                    f"model {inst.uid!r} could not be loaded: {exc}"
                ) from None
            inst.state, inst.error = "ready", None
            self._publish(inst)
            for rep in inst.replicas:
                self._watch(inst, rep)
            log.info("reloaded %s", inst.uid)

    # --- restore -------------------------------------------------------------------------------
    async def _restore(self) -> None:
        """Relaunch what was launched before the restart, in the background."""
        async with self.sessions() as session:
            rows = await crud.list_instances(session, node=self.node)
        for row in rows:
            try:
                spec = LaunchSpec.model_validate_json(row.spec)
            except ValueError as exc:
                log.error("cannot restore %s: stored launch spec is invalid: %s", row.uid, exc)
                continue
            if spec.uid in self._instances:
                continue
            try:
                await self.launch(spec, wait=False, persist=False)
            except LaunchError as exc:
                log.error("cannot restore %s: %s", spec.uid, exc.message)


def _swallow(task: asyncio.Task[Any]) -> None:
    """Retrieve a background load's exception: its reason is already in the instance state."""
    if not task.cancelled():
        task.exception()


def _progress(inst: Instance, stage: str, done: int, total: int) -> None:
    inst.progress = {"stage": stage, "bytes_done": done, "bytes_total": total}


def _note_loading(inst: Instance, rep: Replica, health: dict[str, Any], t0: float) -> None:
    rep.health = health
    if inst.progress.get("stage") == "loading":
        inst.progress["elapsed_s"] = round(time.monotonic() - t0, 1)
