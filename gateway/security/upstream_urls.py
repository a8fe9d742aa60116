"""Where a channel (an admin-set upstream URL) may point.

Private addresses stay allowed: a local vLLM, a GPU server on the LAN and modelport's own workers
are what channels are for. What is refused, unless listed in `upstream_allow`:
- any scheme but http and https (the adaptors speak HTTP; file:, gopher: and friends only ever
  serve an attacker);
- cloud metadata services -- the link-local ranges (169.254.0.0/16 with AWS, GCP, Azure and
  OpenStack's 169.254.169.254; fe80::/10), AWS's IPv6 fd00:ec2::254, Alibaba's 100.100.100.200 --
  and the names that lead there (metadata.google.internal, ...). A channel pointed there would
  hand the instance's cloud credentials to whoever can read the channel's test result or
  relay answers.

The URL is checked when a channel is written (a clear 400) and again before every upstream
request; the upstream client's resolver refuses a channel hostname that resolves to a metadata
address (DNS can change after the write).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gateway.errors import InvalidRequest
from gateway.security.ssrf import Allow, IPAddress, literal_ip

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_NETS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)


class UpstreamURLRefused(InvalidRequest):
    code = "upstream_url_not_allowed"


def is_metadata(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in METADATA_NETS)


def check_upstream_url(url: str, allow: Allow) -> None:
    """Refuse (UpstreamURLRefused, a 400) a URL a channel must not point at."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamURLRefused(
            f"a channel's base URL must be http(s) with a host, not {url!r}", param="base_url"
        )
    host = parts.hostname.lower().rstrip(".")
    if host in allow.hosts:
        return
    lit = literal_ip(host)
    if host in METADATA_HOSTS or (lit is not None and is_metadata(lit) and not allow.ip(lit)):
        raise UpstreamURLRefused(
            f"{host} is a cloud metadata address: a channel may not point there (an operator "
            "who really means it lists the host in MODELPORT_UPSTREAM_ALLOW)",
            param="base_url",
        )


class UpstreamResolver(AbstractResolver):
    """The system resolver, refusing a host that resolves to a metadata address."""

    def __init__(self, allow: Allow) -> None:
        self.allow = allow
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host.lower().rstrip(".") in self.allow.hosts:
            return results
        for r in results:
            addr = ipaddress.ip_address(str(r["host"]).split("%", 1)[0])
            if is_metadata(addr) and not self.allow.ip(addr):
                raise OSError(f"{host} resolves to {addr}, a cloud metadata address (refused)")
        return results

    async def close(self) -> None:
        await self._inner.close()


def channel_url_problem(base_url: str | None, allow: list[str]) -> str | None:
    """Why a channel may not be saved with this base URL; None when it may (or has none: the
    channel type's default URL applies)."""
    if not base_url or not base_url.strip():
        return None
    try:
        check_upstream_url(base_url, Allow.of(allow))
    except UpstreamURLRefused as exc:
        return exc.message
    return None
