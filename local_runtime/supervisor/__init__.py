"""The runtime supervisor: worker processes behind the gateway's route table (see core)."""

from __future__ import annotations

from local_runtime.resolve import LaunchError
from local_runtime.supervisor.core import Supervisor, SupervisorOptions, UidTaken, UnknownInstance

__all__ = ["LaunchError", "Supervisor", "SupervisorOptions", "UidTaken", "UnknownInstance"]
