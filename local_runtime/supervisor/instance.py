"""The state of one launched UID and of its replicas, and how it is described to the UI and API.

Instance states (the `status` users see):
- loading    resolving files, starting workers (first launch, restore, or a reload on demand)
- ready      every replica serves
- restarting at least one replica died or hung and is being restarted (the others serve)
- unloading  stopping its workers (idle, LRU, or asked to)
- unloaded   idle long enough (or pushed out by max_loaded_models): no process, still routable;
             the next request starts it again
- error      the launch (on restore) failed, or every replica gave up restarting
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_runtime.spec import LaunchSpec, ResolvedSpec
from local_runtime.supervisor.logs import BoundedLog
from local_runtime.supervisor.ports import ReplicaAddress
from local_runtime.supervisor.process import WorkerProcess


@dataclass(eq=False)
class Replica:
    index: int
    port: int
    gpus: list[int] | None
    address: ReplicaAddress  # what routers see; live, like the fields below
    log: BoundedLog
    worker: WorkerProcess | None = None
    # stopped | loading | ready | restarting | error
    status: str = "stopped"
    restarts: int = 0
    quick_failures: int = 0
    last_error: str | None = None
    ready_since: float | None = None
    next_restart_at: float | None = None
    health: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None
    key_id: str = ""  # names this start's worker key (gateways holding the root derive it)
    key: str | None = field(default=None, repr=False)

    def set_key(self, key_id: str, key: str | None) -> None:
        """The worker's key for this start; callers send it as their bearer."""
        self.key_id, self.key = key_id, key
        self.address.key = key

    def set_port(self, port: int) -> None:
        """A new port (the old one was taken while the worker was down); the address follows."""
        self.port = port
        self.address.base_url = f"http://127.0.0.1:{port}/v1"

    def describe(self, now: float) -> dict[str, Any]:
        running = self.worker is not None and self.worker.running
        return {
            "index": self.index,
            "status": self.status,
            "pid": self.worker.pid if running and self.worker else None,
            "port": self.port,
            "key_id": self.key_id,
            "first_byte_timeout_s": self.address.first_byte_timeout_s,
            "gpus": self.gpus,
            "rss_bytes": self.health.get("rss_bytes") if running else None,
            "uptime_s": round(now - self.ready_since, 1) if self.ready_since and running else None,
            "inflight": self.health.get("inflight") if running else None,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "next_restart_in_s": (
                round(max(self.next_restart_at - now, 0.0), 1) if self.next_restart_at else None
            ),
            "requests": self.requests,
            "log": str(self.log.path),
        }


@dataclass(eq=False)
class Instance:
    spec: LaunchSpec
    keep_alive_s: float
    resolved: ResolvedSpec | None = None
    replicas: list[Replica] = field(default_factory=list)
    # loading | ready | unloading | unloaded | error
    state: str = "loading"
    error: str | None = None
    routable: bool = False
    created: float = field(default_factory=time.time)
    loading_since: float = field(default_factory=time.time)  # when the current load began
    last_used: float = field(default_factory=time.time)
    progress: dict[str, Any] = field(default_factory=dict)
    spec_path: Path | None = None
    load_task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def uid(self) -> str:
        return self.spec.uid

    @property
    def status(self) -> str:
        if self.state != "ready":
            return self.state
        if all(r.status == "error" for r in self.replicas):
            return "error"
        if any(r.status != "ready" for r in self.replicas):
            return "restarting"
        return "ready"

    @property
    def loaded(self) -> bool:
        """Holds (or is about to hold) memory: counts against max_loaded_models."""
        return self.state in ("loading", "ready")

    def describe(self, now: float | None = None) -> dict[str, Any]:
        now = now or time.time()
        r = self.resolved
        idle = now - self.last_used
        unload_in = (
            round(max(self.keep_alive_s - idle, 0.0), 1)
            if self.keep_alive_s > 0 and self.state == "ready"
            else None
        )
        errors = [rep.last_error for rep in self.replicas if rep.status == "error"]
        return {
            "uid": self.uid,
            "model_name": r.model_name if r else self.spec.model_name,
            "model_type": r.model_type if r else self.spec.model_type,
            "model_engine": r.engine if r else self.spec.model_engine,
            "model_format": r.model_format if r else self.spec.model_format,
            "model_size_in_billions": r.model_size_in_billions if r else None,
            "quantization": r.quantization if r else self.spec.quantization,
            "model_path": r.model_path if r else self.spec.model_path,
            "device": r.device if r else None,
            "status": self.status,
            "error": self.error or (errors[0] if errors else None),
            "replica": self.spec.replica,
            "replicas": [rep.describe(now) for rep in self.replicas],
            "created": int(self.created),
            "loading_since": round(self.loading_since, 1) if self.state == "loading" else None,
            "last_used": int(self.last_used),
            "idle_s": round(idle, 1),
            "keep_alive_s": self.keep_alive_s,
            "unload_in_s": unload_in,
            "progress": dict(self.progress),
            "spec": self.spec.model_dump(mode="json"),
        }
