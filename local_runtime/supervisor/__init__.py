"""The runtime supervisor: worker processes behind whatever routes to them (see core, ports)."""

from __future__ import annotations

from local_runtime.resolve import LaunchError
from local_runtime.supervisor.core import Supervisor
from local_runtime.supervisor.options import (
    ReplicaUnavailable,
    SupervisorOptions,
    UidTaken,
    UnknownInstance,
)
from local_runtime.supervisor.ports import (
    LaunchStore,
    LocalModel,
    MemoryLaunchStore,
    ReplicaAddress,
    ReplicasChanged,
    StoredLaunch,
)

__all__ = [
    "LaunchError",
    "LaunchStore",
    "LocalModel",
    "MemoryLaunchStore",
    "ReplicaAddress",
    "ReplicaUnavailable",
    "ReplicasChanged",
    "StoredLaunch",
    "Supervisor",
    "SupervisorOptions",
    "UidTaken",
    "UnknownInstance",
]
