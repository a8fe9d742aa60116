"""The cluster secret and the keys that workers ask of every caller.

Every worker (a loopback worker under `modelport serve` as much as a GPU node's) is started with
its own key in MODELPORT_WORKER_SECRET and answers only requests that carry `Authorization:
Bearer <key>`. The key is never chosen freely: it is `worker_key(root, node, key_id)` (derived in
local_runtime.keys, which both halves use), an HMAC of
a random per-launch `key_id` under a root that only the gateways and the worker's supervisor hold:

- a GPU node's root is the cluster secret (the same value on gateways and nodes,
  `MODELPORT_CLUSTER_SECRET`); the node lists each worker's `key_id` in its heartbeat and every
  gateway derives the key itself, so neither the root nor a key travels in a heartbeat, and what a
  gateway sends to a worker (its key) opens that one launch of that one node and nothing else;
- a host's own workers use `local_root(secret_key)`, derived from the installation's secret key,
  so every `--workers N` process of the host can call the runtime owner's workers.

Heartbeats are signed over their time and body (gateway.cluster.heartbeat), so none replays.

A node without a secret may only bind its workers to a loopback address (`require_secret`): the
quick start and a single-machine trial keep working, and no worker is ever exposed unguarded.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import TYPE_CHECKING

from local_runtime.keys import WORKER_SECRET_ENV, worker_key

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = [
    "WORKER_SECRET_ENV",
    "configured",
    "is_loopback",
    "local_root",
    "require_secret",
    "worker_key",
]


def configured(value: SecretStr | None) -> str | None:
    """The setting's value; an empty one counts as unset."""
    return (value.get_secret_value() or None) if value is not None else None


def local_root(secret_key: str) -> str:
    """The root of a host's own workers' keys: shared by the processes of one installation
    (they read the same secret key), useless for decrypting anything."""
    return hmac.new(secret_key.encode(), b"modelport-local-workers", hashlib.sha256).hexdigest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def require_secret(bind_host: str, secret: str | None) -> None:
    """Refuse to expose workers beyond loopback without a secret (ValueError says what to do)."""
    if secret is None and not is_loopback(bind_host):
        raise ValueError(
            f"refusing to serve workers on {bind_host} without a cluster secret: anyone reaching "
            "that address could use them. Set MODELPORT_CLUSTER_SECRET (the same value as on the "
            "gateways), or --bind-host 127.0.0.1 for a node on the gateway's own machine"
        )
