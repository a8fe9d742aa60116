"""The local runtime as every caller sees it: `Services.runtime`, the admin API, the UI, the CLI.

With `uvicorn --workers N` every process builds a Supervisor, but only the one holding the host's
runtime lock runs it (gateway.runtime_host.host). `LocalRuntime.start` decides once which of two
implementations answers `instances`, `instance`, `launch` and `terminate` in this process: the
Supervisor itself in the owner, a `ProxyRuntime` (command rows in the database, the owner's node
record) in the others. Logs, unload and load need the worker processes: only the owner answers
them; elsewhere they raise `RuntimeElsewhere`, an `UnknownInstance` that says where they answer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from gateway.model_info import ServedModel
from gateway.runtime_host.adapters import served_models
from gateway.runtime_host.host import HostRuntime
from local_runtime.spec import LaunchSpec
from local_runtime.supervisor import Supervisor, SupervisorOptions, UnknownInstance

log = logging.getLogger("modelport.cluster")


class RuntimeCalls(Protocol):
    """What differs between the process that runs the runtime and the others."""

    def instances(self) -> list[dict[str, Any]]: ...

    def __contains__(self, uid: object) -> bool: ...

    def instance(self, uid: str) -> dict[str, Any]: ...

    async def launch(self, spec: LaunchSpec, *, wait: bool = True) -> dict[str, Any]: ...

    async def terminate(self, uid: str) -> None: ...


class RuntimeElsewhere(UnknownInstance):
    """Logs, unload or load asked of a process that does not run the host's workers."""

    def __init__(self, uid: str, what: str) -> None:
        LookupError.__init__(
            self,
            f"{what} of {uid!r}: only the process that runs this host's models answers it "
            "(`--workers N`: the holder of <home>/runtime.lock); ask again, or serve with one "
            "worker",
        )
        self.message = str(self.args[0])


class LocalRuntime:
    def __init__(self, supervisor: Supervisor, host: HostRuntime) -> None:
        self.supervisor = supervisor
        self.host = host
        self._calls: RuntimeCalls = supervisor  # until `start` decides

    @property
    def owner(self) -> bool:
        """Whether this process runs the host's workers (known once started)."""
        return self.host.owner

    @property
    def home(self) -> Path:
        return self.supervisor.home

    @property
    def options(self) -> SupervisorOptions:
        return self.supervisor.options

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """The host lock decides, once, whether this process runs the workers."""
        if self.host.take_lock():
            await self.supervisor.start()
        else:
            log.info("the local runtime of this host runs in another process; routing to it")
            self._calls = self.host.proxy()

    async def close(self) -> None:
        await self.supervisor.close()

    # --- every process -----------------------------------------------------------------------
    def instances(self) -> list[dict[str, Any]]:
        return self._calls.instances()

    def __contains__(self, uid: object) -> bool:
        return uid in self._calls

    def instance(self, uid: str) -> dict[str, Any]:
        return self._calls.instance(uid)

    async def launch(self, spec: LaunchSpec, *, wait: bool = True) -> dict[str, Any]:
        """With `wait`, answers once the UID is ready and routable from every process of this
        host (the owner's heartbeat that carries it is written: `HostRuntime.published`)."""
        launched = await self._calls.launch(spec, wait=wait)
        if wait:
            await self.host.published()
        return launched

    async def terminate(self, uid: str) -> None:
        await self._calls.terminate(uid)

    def served_models(self) -> dict[str, ServedModel]:
        """The UIDs whose workers run here (the others' come from the owner's node record)."""
        return served_models(self.supervisor)

    # --- the owner only ----------------------------------------------------------------------
    def logs(self, uid: str, lines: int = 200, replica: int | None = None) -> dict[str, list[str]]:
        self._owner_only(uid, "logs")
        return self.supervisor.logs(uid, lines, replica)

    async def unload(self, uid: str) -> None:
        self._owner_only(uid, "unload")
        await self.supervisor.unload(uid)

    async def load(self, uid: str) -> None:
        self._owner_only(uid, "load")
        await self.supervisor.load(uid)

    def _owner_only(self, uid: str, what: str) -> None:
        if self._calls is not self.supervisor:
            raise RuntimeElsewhere(uid, what)
