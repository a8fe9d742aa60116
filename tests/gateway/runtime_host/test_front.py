"""The runtime front (issue 16): `start` decides once, by the host lock, whether the supervisor or
the proxy answers; nothing is rebound on the supervisor.

Two fronts on one home stand for two processes of `uvicorn --workers 2` (flock conflicts between
two opens of the lock file, in one process as in two). The node registry is a stub holding the
owner's record: the proxy reads that record and writes command rows, which no test here needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.runtime_host.front import LocalRuntime, RuntimeElsewhere
from gateway.runtime_host.host import HostRuntime
from local_runtime.catalog import Catalog
from local_runtime.settings import RuntimeSettings
from local_runtime.spec import LaunchSpec
from local_runtime.supervisor import MemoryLaunchStore, Supervisor, UidTaken, UnknownInstance


class Registry:
    """The NodeRegistry calls HostRuntime and its proxy make."""

    host_scope = ""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def nodes(self) -> list[dict[str, Any]]:
        return self.records

    async def sync(self) -> None:
        return None


def front(home: Path, registry: Registry) -> LocalRuntime:
    supervisor = Supervisor(
        settings=RuntimeSettings(home=home), catalog=Catalog([]), store=MemoryLaunchStore()
    )
    host = HostRuntime(supervisor, registry, sessions=None, home=home)  # type: ignore[arg-type]
    return LocalRuntime(supervisor, host)


async def test_the_lock_holder_runs_the_supervisor_and_the_other_answers_from_its_record(
    tmp_path: Path,
) -> None:
    registry = Registry()
    owner, proxy = front(tmp_path, registry), front(tmp_path, registry)
    await owner.start()
    await proxy.start()
    try:
        assert owner.owner and not proxy.owner
        assert proxy.supervisor._http is None  # the proxy's supervisor was never started
        record = {"uid": "w", "status": "loading", "replicas": []}
        registry.records = [{"node_id": owner.host.node_id, "instances": [record]}]

        assert proxy.instances() == [record]
        assert "w" in proxy and proxy.instance("w")["status"] == "loading"
        assert owner.instances() == [] and "w" not in owner  # the owner's supervisor's table
        with pytest.raises(UidTaken):
            await proxy.launch(LaunchSpec(model_name="m", model_uid="w"))

        # what needs the worker processes says where it is answered, not "no model 'w'"
        with pytest.raises(RuntimeElsewhere, match="only the process that runs"):
            proxy.logs("w")
        with pytest.raises(RuntimeElsewhere):
            await proxy.unload("w")
        with pytest.raises(RuntimeElsewhere):
            await proxy.load("w")
        with pytest.raises(UnknownInstance) as unknown:
            owner.logs("w")
        assert not isinstance(unknown.value, RuntimeElsewhere)
    finally:
        for rt in (proxy, owner):
            await rt.close()
            await rt.host.close()
