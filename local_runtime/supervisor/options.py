"""The supervisor's timings and its errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from local_runtime.resolve import LaunchError


class UidTaken(LaunchError):
    """A launch under a UID that is already launched (HTTP 409)."""


class UnknownInstance(LookupError):
    """No model is launched under this UID."""

    def __init__(self, uid: str) -> None:
        super().__init__(f"no model is launched under uid {uid!r}")
        self.message = str(self.args[0])


class ReplicaUnavailable(Exception):
    """A replica cannot take a request (terminated, failed, still loading): serve elsewhere.

    Raised by a replica's `prepare`; whoever routes to replicas maps it to its own "try another
    endpoint" (the gateway: UpstreamUnavailable)."""


@dataclass
class SupervisorOptions:
    """Timings of the supervisor; defaults suit real models, tests shorten them."""

    health_interval_s: float = 3.0
    health_timeout_s: float = 5.0
    hung_after: int = 3  # consecutive unanswered health checks before a worker is killed
    ready_timeout_s: float = 1800.0  # first byte of weights to ready, per replica
    stop_grace_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    max_quick_failures: int = 5  # restarts in a row of a replica that lived < stable_after_s
    stable_after_s: float = 60.0
    idle_check_s: float = 1.0
    error_exit_grace_s: float = 30.0  # how long a failed worker keeps /health readable
    log_max_bytes: int = 4 * 1024 * 1024
    # where workers listen: loopback under `serve`; a GPU node (`modelport node`) binds the address
    # the gateway reaches it on
    worker_host: str = "127.0.0.1"
    # the root of every worker launch's own key (local_runtime.keys.worker_key): a node's
    # cluster secret, the host's key under `serve`; None draws a random one
    worker_key_root: str | None = field(default=None, repr=False)
    worker_keys: bool = True  # False only for a node without a cluster secret (loopback trial)
    # more environment for every worker (the gateway's image-link key and lifetime)
    worker_env: dict[str, str] = field(default_factory=dict, repr=False)
