"""One local runtime per host, however many processes serve (`uvicorn --workers N`).

Each process builds a Supervisor, but at startup only the one that takes an exclusive `flock` on
`<home>/runtime.lock` starts it (the kernel drops the lock when that process dies, so a restarted
process can take over). The owner publishes its workers in the node registry as a host-scoped
node (loopback URLs, used only by processes of the same host and home), so every process routes
to them exactly as to a GPU node's workers. It heartbeats every `interval` and at once when its
routes change (`publish_soon`); a launch that waited for "ready" answers only after that
heartbeat is written (`published`), and a process that finds no route for a model re-reads the
records first (`refresh`), so "ready" means routable from every process, not a second later.

The other processes answer the runtime API by proxy (`ProxyRuntime`): a launch or terminate
becomes a command row in the database for the host node (what GPU nodes read as their desired
state); the owner executes and deletes it within a second, and the caller waits for the result in
the owner's record. Which of the two answers is decided once, at startup, by the front that every
caller holds (gateway.runtime_host.front.LocalRuntime); nothing here rebinds the supervisor.
Limitations: logs/unload/load of a UID answer only on the owner; an unloaded model (keep_alive)
is routable only from the owner, which reloads it on the next request it receives (the others
answer 503 for it, as for a UID still loading: the proxy's `instance` reads the owner's record).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from gateway.cluster import desired
from gateway.cluster.nodes import NodeRegistry
from gateway.cluster.shared_read import SharedRead
from gateway.runtime_host.adapters import SessionFactory, ready_workers
from local_runtime.resolve import LaunchError
from local_runtime.spec import LaunchSpec
from local_runtime.supervisor import Supervisor, UidTaken, UnknownInstance

log = logging.getLogger("modelport.cluster")

TERMINATE = "__terminate__"
PUBLISH_WAIT_S = 5.0


class HostRuntime:
    """The host's runtime lock, and the owner's side of it: heartbeat the supervisor's workers,
    execute the command rows the other processes write (`take_lock` decides which this is)."""

    def __init__(
        self,
        supervisor: Supervisor,
        registry: NodeRegistry,
        *,
        sessions: SessionFactory,
        home: Path,
        interval: float = 1.0,
    ) -> None:
        self.supervisor = supervisor  # driven here only in the process that holds the lock
        self.sessions = sessions
        self.registry = registry
        self.interval = interval
        self.lock_path = home / "runtime.lock"
        self.node_id = (
            f"host-{socket.gethostname()}-{hashlib.sha256(str(home).encode()).hexdigest()[:8]}"
        )
        self.owner = False
        self.session = secrets.token_hex(8)
        self._lock_file: IO[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # the owner's routes changed: heartbeat now
        self._beat = asyncio.Condition()  # a heartbeat was written (`published`)
        self._beats_started = self._beats_done = 0
        self._sync = SharedRead(self.registry.sync)

    # --- the lock ----------------------------------------------------------------------------
    def take_lock(self) -> bool:
        """Whether this process runs the host's supervisor (asked once, at startup): it does if
        it takes `<home>/runtime.lock`, held until the process exits."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.lock_path, "ab")  # noqa: SIM115 - held open for the process's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        f.truncate(0)
        f.write(str(os.getpid()).encode())
        f.flush()
        self._lock_file = f
        self.owner = True
        return True

    def proxy(self) -> ProxyRuntime:
        """The runtime API of a process without the lock: through the owner."""
        return ProxyRuntime(self, ready_timeout_s=self.supervisor.options.ready_timeout_s)

    def start(self) -> None:
        if self.owner:
            self.registry.skip_own(self.node_id)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="host-runtime")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            with contextlib.suppress(OSError, ValueError):
                await self.registry.remove(self.node_id)
        if self._lock_file is not None:
            self._lock_file.close()

    # --- owner: publish workers, execute commands --------------------------------------------
    def publish_soon(self) -> None:
        """The supervisor's routes changed (a replica became ready, restarted or stopped): the
        other processes learn it from the next heartbeat, so it goes out now, not within
        `interval`."""
        self._wake.set()

    async def published(self) -> None:
        """Wait for a heartbeat that began after this call (at most `PUBLISH_WAIT_S`): a launch
        that answers "ready" only then, so every process of this host routes it at once."""
        if not self.owner or self._task is None:
            return
        want = self._beats_started + 1
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PUBLISH_WAIT_S), self._beat:
                await self._beat.wait_for(lambda: self._beats_done >= want)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._beats_started += 1
            try:
                await self.registry.heartbeat(self._record())
                await self._execute_commands()
            except (SQLAlchemyError, OSError, ValueError) as exc:
                log.warning("host runtime heartbeat failed: %s", exc)
            async with self._beat:
                self._beats_done = self._beats_started
                self._beat.notify_all()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()

    def _record(self) -> dict[str, Any]:
        instances = self.supervisor.instances()
        return {
            "node_id": self.node_id,
            "session": self.session,
            "host_scope": self.registry.host_scope,
            "workers": ready_workers(self.supervisor, instances, "127.0.0.1"),
            "instances": instances,
        }

    async def _execute_commands(self) -> None:
        async with self.sessions() as session:
            specs = await desired.for_node(session, self.node_id)
        for raw in specs:
            data = orjson.loads(raw)
            uid = data.get(TERMINATE) or LaunchSpec.model_validate(data).uid
            try:
                if TERMINATE in data:
                    await self.supervisor.terminate(uid)
                else:
                    await self.supervisor.launch(LaunchSpec.model_validate(data), wait=False)
            except (UnknownInstance, LaunchError) as exc:
                log.warning("runtime command for %s failed: %s", uid, exc)
            async with self.sessions() as session:
                await desired.unplace(session, node=self.node_id, uid=uid)

    # --- the other processes --------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the owner's record now instead of at the registry's next sync: asked before a
        request for a model this process does not route is refused, since the owner may have
        published it ready a moment ago. Concurrent callers share the read."""
        if self.owner:
            return
        try:
            await self._sync()
        except (SQLAlchemyError, OSError, ValueError) as exc:  # answer from the last copy
            log.warning("node registry refresh failed: %s", exc)

    def owner_record(self) -> dict[str, Any]:
        for rec in self.registry.nodes():
            if rec["node_id"] == self.node_id:
                return rec
        return {}


class ProxyRuntime:
    """The runtime API in a process that does not hold the lock: launch and terminate are
    command rows for the host node, executed by the owner; instances are the owner's record."""

    def __init__(self, host: HostRuntime, *, ready_timeout_s: float) -> None:
        self.host = host
        self.registry = host.registry
        self.ready_timeout_s = ready_timeout_s

    def instances(self) -> list[dict[str, Any]]:
        return list(self.host.owner_record().get("instances", []))

    def __contains__(self, uid: object) -> bool:
        return any(inst["uid"] == uid for inst in self.instances())

    def instance(self, uid: str) -> dict[str, Any]:
        for inst in self.instances():
            if inst["uid"] == uid:
                return inst
        raise UnknownInstance(uid)

    async def _command(self, uid: str, body: dict[str, Any]) -> None:
        async with self.host.sessions() as session:
            await desired.place(
                session, node=self.host.node_id, uid=uid, spec_json=orjson.dumps(body).decode()
            )

    async def launch(self, spec: LaunchSpec, *, wait: bool = True) -> dict[str, Any]:
        await self.registry.sync()
        if spec.uid in self:
            raise UidTaken(f"model_uid {spec.uid!r} is already launched")
        await self._command(spec.uid, spec.model_dump(mode="json"))
        deadline = time.monotonic() + (self.ready_timeout_s if wait else 30.0)
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await self.registry.sync()
            with contextlib.suppress(UnknownInstance):
                inst = self.instance(spec.uid)
                if not wait:
                    return inst
                if inst["status"] == "ready":
                    return inst
                if inst["status"] == "error":
                    raise LaunchError(inst.get("error") or f"{spec.uid!r} failed to start")
        raise LaunchError(f"the runtime process did not report {spec.uid!r} in time")

    async def terminate(self, uid: str) -> None:
        await self.registry.sync()
        self.instance(uid)
        await self._command(uid, {TERMINATE: uid})
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await self.registry.sync()
            if uid not in self:
                return
        raise LaunchError(f"the runtime process did not stop {uid!r} in time")
