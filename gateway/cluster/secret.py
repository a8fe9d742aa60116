"""The cluster secret: what a GPU node's workers ask of every caller.

A node's workers listen on an address the gateways reach them on (`--bind-host`), so anyone else
who reaches it could use the models directly, unmetered. With `cluster_secret` set (the same value
on gateways and nodes, `MODELPORT_CLUSTER_SECRET`), the node's workers answer only requests that
carry `Authorization: Bearer <secret>`, which gateways send on every relayed request and the
node's own supervisor on its health checks. A node has no other inbound port: it polls the
gateway for commands (`local_runtime.node`), and those heartbeats are authenticated by its node
token.

The heartbeat also carries a proof that the node holds the gateway's secret (an HMAC of its node
id; the secret itself never travels to the gateway), so a node configured with a different secret,
or none, is refused at its first heartbeat with a message saying so, instead of joining routing
and failing every request with 401.

A node without a secret may only bind its workers to a loopback address (`require_secret`): the
quick start and a single-machine trial keep working, and no worker is ever exposed unguarded.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import SecretStr

PROOF_HEADER = "X-Modelport-Cluster-Proof"
# how a node's supervisor hands the secret to its workers
WORKER_SECRET_ENV = "MODELPORT_WORKER_SECRET"  # noqa: S105 - a variable name, not a secret


def configured(value: SecretStr | None) -> str | None:
    """The setting's value; an empty one counts as unset."""
    return (value.get_secret_value() or None) if value is not None else None


def proof(secret: str, node_id: str) -> str:
    """What a node sends to show it holds `secret`, bound to its id so it proves nothing else."""
    return hmac.new(
        secret.encode(), b"modelport-node:" + node_id.encode(), hashlib.sha256
    ).hexdigest()


def proof_problem(configured: str | None, node_id: str, given: str | None) -> str | None:
    """Why a heartbeat's proof does not match this gateway's secret, or None when it does."""
    if configured is None:
        if given:
            return (
                f"node {node_id!r} has a cluster secret and this gateway has none: set the same "
                "MODELPORT_CLUSTER_SECRET on every gateway"
            )
        return None
    if not given:
        return (
            f"this gateway requires the cluster secret: set MODELPORT_CLUSTER_SECRET on node "
            f"{node_id!r} to the gateways' value"
        )
    if not hmac.compare_digest(given.encode(), proof(configured, node_id).encode()):
        return (
            f"node {node_id!r} has a different cluster secret than this gateway: set the same "
            "MODELPORT_CLUSTER_SECRET on both"
        )
    return None


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
