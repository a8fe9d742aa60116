"""Signed node heartbeats: what a node sends, and what a gateway accepts.

A heartbeat used to carry a fixed proof, so one captured heartbeat could be replayed for ever and
pointed at any address. Now each one is signed over what it says and when:

    signature = HMAC-SHA256(key, "POST\\n/api/nodes/heartbeat\\n<timestamp>\\n<sha256(body)>")

`key` is the cluster secret where one is configured (a node beyond loopback always has one), else
the node token itself (a same-machine trial; the token then travels anyway). A gateway refuses a
heartbeat whose timestamp is more than `MAX_SKEW_S` away from its clock, or whose signature it has
already seen (`ReplayGuard`: Redis `SET NX` shared by every replica, or process memory without
Redis), so a captured heartbeat is useless a moment later and cannot be edited at all.

Worker addresses in an accepted heartbeat must lie on the host the heartbeat came from and at the
worker path (`address_problem`), so even a valid node cannot steer traffic to another machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import time
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

TIMESTAMP_HEADER = "X-Modelport-Timestamp"
SIGNATURE_HEADER = "X-Modelport-Signature"
SIGNED_WITH_HEADER = "X-Modelport-Signed-With"  # "cluster-secret" | "node-token"
PATH = "/api/nodes/heartbeat"
MAX_SKEW_S = 30.0
WORKER_PATH = "/v1"


def sign(key: str, method: str, path: str, timestamp: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method.upper()}\n{path}\n{timestamp}\n{digest}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def headers(
    key: str, body: bytes, *, with_secret: bool, now: float | None = None
) -> dict[str, str]:
    """What a node adds to a heartbeat POST of `body`."""
    timestamp = f"{time.time() if now is None else now:.3f}"
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(key, "POST", PATH, timestamp, body),
        SIGNED_WITH_HEADER: "cluster-secret" if with_secret else "node-token",
    }


def signature_problem(
    *,
    secret: str | None,
    token: str,
    node_id: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    signed_with: str | None,
    now: float | None = None,
) -> str | None:
    """Why a heartbeat's signature is not acceptable, or None; the message says what to fix."""
    if secret is not None and signed_with != "cluster-secret":
        return (
            f"this gateway requires the cluster secret: set MODELPORT_CLUSTER_SECRET on node "
            f"{node_id!r} to the gateways' value"
        )
    if secret is None and signed_with == "cluster-secret":
        return (
            f"node {node_id!r} has a cluster secret and this gateway has none: set the same "
            "MODELPORT_CLUSTER_SECRET on every gateway"
        )
    try:
        sent_at = float(timestamp or "")
    except ValueError:
        return "the heartbeat is not signed: upgrade the node (modelport node)"
    if not signature:
        return "the heartbeat is not signed: upgrade the node (modelport node)"
    skew = abs((time.time() if now is None else now) - sent_at)
    if skew > MAX_SKEW_S:
        return (
            f"the heartbeat of node {node_id!r} is {skew:.0f}s away from this gateway's clock "
            f"(at most {MAX_SKEW_S:.0f}s): a replayed heartbeat, or a clock to fix with NTP"
        )
    expected = sign(secret if secret is not None else token, "POST", PATH, timestamp or "", body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        if secret is not None:
            return (
                f"node {node_id!r} has a different cluster secret than this gateway (or the "
                "heartbeat was altered): set the same MODELPORT_CLUSTER_SECRET on both"
            )
        return f"the heartbeat of node {node_id!r} was altered in transit"
    return None


class ReplayGuard:
    """Signatures seen in the last 2 x MAX_SKEW_S: a repeated one is a replay."""

    def __init__(self, redis_url: str = "", prefix: str = "modelport") -> None:
        self._redis: Redis | None = (
            Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
            if redis_url
            else None
        )
        self._prefix = f"{prefix}:cluster:heartbeat:"
        self._seen: dict[str, float] = {}

    async def first_time(self, signature: str) -> bool:
        """True the first time `signature` is presented anywhere in the cluster."""
        now = time.monotonic()
        if len(self._seen) > 4096:
            self._seen = {s: t for s, t in self._seen.items() if t > now}
        if self._seen.get(signature, 0.0) > now:
            return False
        self._seen[signature] = now + 2 * MAX_SKEW_S
        if self._redis is None:
            return True
        try:
            return bool(
                await self._redis.set(
                    self._prefix + signature, b"1", nx=True, px=int(2000 * MAX_SKEW_S)
                )
            )
        except (RedisError, OSError):
            return True  # Redis away: this replica's memory still refuses replays to it

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _same_ip(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped is not None:
        y = y.ipv4_mapped
    return x == y


async def _resolves_to(host: str, client: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return _same_ip(host, client)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None), 5.0)
    except (OSError, TimeoutError):
        return False
    return any(_same_ip(str(info[4][0]), client) for info in infos)


async def address_problem(base_urls: list[str], client: str | None) -> str | None:
    """Why a worker address may not be routed to, or None: each must be `http(s)://<the
    heartbeat's own host>:<port>/v1`, nothing else (no credentials, query or other path)."""
    resolved: dict[str, bool] = {}
    for url in base_urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            port = None
        if (
            parts.scheme not in ("http", "https")
            or not host
            or port is None
            or parts.username is not None
            or parts.password is not None
            or parts.query
            or parts.fragment
            or parts.path.rstrip("/") != WORKER_PATH
        ):
            return f"worker address {url!r} is not http(s)://host:port{WORKER_PATH}"
        if host not in resolved:
            resolved[host] = client is not None and await _resolves_to(host, client)
        if not resolved[host]:
            return (
                f"worker address {url!r} is not on the host this heartbeat came from "
                f"({client}): a node advertises only its own workers (--advertise-host)"
            )
    return None
