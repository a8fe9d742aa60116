"""Fetch a caller-supplied URL without letting the caller reach our private network (SSRF).

The rules, for every hop (the first URL and each redirect, followed by hand, at most
`max_redirects`):
- only http and https;
- the host is resolved here, *every* address it resolves to is checked, and the connection then
  goes to those checked addresses only (aiohttp gets a resolver pinned to them), so a DNS answer
  that changes between check and connect (rebinding) cannot slip through;
- refused: anything that is not a global unicast address -- private (10/8, 172.16/12,
  192.168/16, fc00::/7), loopback, link-local (169.254/16, fe80::/10, which hold the cloud metadata
  services 169.254.169.254 and fd00:ec2::254), CGNAT, multicast, unspecified (0.0.0.0, ::),
  reserved -- including IPv4 hidden in IPv6 (::ffff:127.0.0.1, NAT64);
- numeric host spellings that resolvers accept (2130706433, 0177.0.0.1, 0x7f.1) are read as the
  address they mean before the check;
- `allow` names hosts or CIDRs that are exempt (an internal image store, say).

Channel base URLs set by admins are not caller input and are not checked here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gateway.errors import InvalidRequest, UpstreamFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[str]]]
REDIRECTS = {301, 302, 303, 307, 308}
_NUMERIC = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchRefused(InvalidRequest):
    """The URL points somewhere the gateway will not go for a caller."""

    code = "url_not_allowed"


class FetchFailed(UpstreamFailed):
    code = "fetch_failed"


@dataclass(slots=True)
class Fetched:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string denotes by itself, including inet_aton's legacy forms."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    if _NUMERIC.match(h):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    return None


def _embedded_v4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if addr.sixtofour is not None:
            return addr.sixtofour
    return None


def is_public(addr: IPAddress) -> bool:
    inner = _embedded_v4(addr)
    if inner is not None and not is_public(inner):
        return False
    return addr.is_global and not addr.is_multicast


@dataclass(frozen=True, slots=True)
class Allow:
    hosts: frozenset[str]
    nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def of(cls, entries: Iterable[str]) -> Allow:
        hosts: set[str] = set()
        nets = []
        for e in entries:
            try:
                nets.append(ipaddress.ip_network(e.strip(), strict=False))
            except ValueError:
                hosts.add(e.strip().lower().rstrip("."))
        return cls(frozenset(hosts), tuple(nets))

    def ip(self, addr: IPAddress) -> bool:
        return any(addr in n for n in self.nets)


async def checked_addresses(host: str, port: int, allow: Allow, resolve: Resolve) -> list[str]:
    """Resolve `host` and return its addresses if every one may be fetched; else refuse."""
    name = host.strip("[]").lower().rstrip(".")
    lit = literal_ip(name)
    addrs = [str(lit)] if lit is not None else await _resolve(name, port, resolve)
    if not addrs:
        raise FetchFailed(f"cannot resolve {host}")
    if name in allow.hosts:
        return addrs
    for a in addrs:
        addr = ipaddress.ip_address(a)
        if not is_public(addr) and not allow.ip(addr):
            raise FetchRefused(
                f"the URL's host {host} resolves to {a}, a private or reserved address the "
                "gateway does not fetch for callers (an operator can allow it with "
                "MODELPORT_FETCH_ALLOW)"
            )
    return addrs


async def _resolve(name: str, port: int, resolve: Resolve) -> list[str]:
    try:
        return await resolve(name, port)
    except OSError as exc:
        raise FetchFailed(f"cannot resolve {name}: {exc}") from exc


class _PinnedResolver(AbstractResolver):
    """Hands aiohttp exactly the addresses that were checked for each host, nothing else."""

    def __init__(self) -> None:
        self.pinned: dict[str, list[str]] = {}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addrs = self.pinned.get(host.lower().rstrip("."))
        if not addrs:
            raise OSError(f"{host} was not checked")
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addrs
        ]

    async def close(self) -> None:
        return None


async def safe_fetch(
    url: str,
    *,
    max_bytes: int,
    allow: Iterable[str] = (),
    max_redirects: int = 3,
    timeout_s: float = 30.0,
    resolve: Resolve | None = None,
    headers: dict[str, str] | None = None,
) -> Fetched:
    """GET a caller's URL under the rules above; the body is capped at `max_bytes`."""
    rules = Allow.of(allow)
    resolve = resolve or system_resolve
    resolver = _PinnedResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    client_timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=client_timeout, auto_decompress=True, trust_env=False
    ) as session:
        current = url
        for _ in range(max_redirects + 1):
            target = URL(current)
            if target.scheme not in ("http", "https") or not target.host:
                raise FetchRefused(f"only http(s) URLs with a host can be fetched, not {current!r}")
            port = target.port or (443 if target.scheme == "https" else 80)
            addrs = await checked_addresses(target.host, port, rules, resolve)
            resolver.pinned[target.host.strip("[]").lower().rstrip(".")] = addrs
            fetch_url: Any = target
            lit = literal_ip(target.host)
            if lit is not None and str(lit) != target.host.strip("[]"):
                # a legacy numeric spelling: connect to the address it was checked as
                fetch_url = target.with_host(str(lit))
            try:
                async with session.get(
                    fetch_url, allow_redirects=False, headers=headers or {}
                ) as resp:
                    if resp.status in REDIRECTS and "Location" in resp.headers:
                        current = urljoin(current, resp.headers["Location"])
                        continue
                    body = await _read_capped(resp, max_bytes)
                    return Fetched(current, resp.status, dict(resp.headers), body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise FetchFailed(f"cannot fetch {current}: {exc}") from exc
        raise FetchRefused(f"too many redirects (more than {max_redirects}) from {url}")


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise FetchRefused(f"the URL's content is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(f"the URL's content is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
