"""A lean pooled HTTP/1.1 client for the relay's JSON pass-through.

One relayed request is one POST of bytes the gateway already holds and a response it forwards
as bytes; aiohttp's general client (URL objects, cookie jar, payload objects, header merging,
tracing hooks) was a quarter of the gateway's CPU per request. This client writes the request
head and body in one call and parses the answer with httptools (llhttp, the parser uvicorn's
server side uses), on keep-alive connections pooled per origin.

What it keeps from the general client, because the relay depends on it:
- no redirects are followed (the caller sees the 3xx), no proxies, no cookies, no decompression;
- every hostname is resolved through `UpstreamResolver`, which refuses cloud metadata addresses
  (results cached 60 s, as aiohttp's `ttl_dns_cache`); TLS verifies the certificate and host name;
- bounded reads: a response head over 64 KiB is an error; a body is buffered up to 256 KiB ahead
  of its reader, then the socket stops being read until the reader catches up;
- request headers with CR or LF are refused (no header injection through a stored key);
- one answer per request: bytes after an answer (a second answer, or anything sent while the
  connection sat idle) break the connection, which is closed, never pooled; chunked trailers are
  dropped and count against the head limit; a connection goes back to the pool only once its
  request was written whole and its answer read to the end;
- connections are opened to each resolved address in turn, the next one started 0.25 s after the
  last if it has not connected (Happy Eyeballs, RFC 8305, through aiohappyeyeballs as aiohttp);
- a pooled connection the server closed while idle is never used; one the server closes within
  0.1 s of being reused, before a byte of the answer, is retried once on a new connection: that
  is the server's idle close crossing the request. Later (the upstream may have worked on the
  request) it is an error, never a second POST.
Anything else (multipart uploads, a URL with credentials or a non-ASCII host) goes through
aiohttp, see OpenAICompatUpstream.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import aiohappyeyeballs
import httptools
from multidict import CIMultiDict

from gateway.security.ssrf import literal_ip
from gateway.security.upstream_urls import UpstreamResolver

HEAD_LIMIT = 64 * 1024  # bytes of status line and headers (and of trailers)
READ_AHEAD = 256 * 1024  # body bytes buffered before the socket is paused
IDLE_TTL = 30.0  # a pooled connection idle longer is closed instead of reused
DNS_TTL = 60.0
IDLE_CLOSE_RACE = 0.1  # a reused connection lost this soon after its request: retried once
HAPPY_EYEBALLS_DELAY = 0.25


Origin = tuple[str, str, int]  # scheme, host, port: what pooled connections are shared by


class ConnectionBroken(Exception):
    """The connection failed or the upstream broke HTTP; the message names what happened."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one URL sends its request: its origin (the pool key), Host header and request target."""

    scheme: str
    host: str  # for DNS and TLS, without brackets
    port: int
    netloc: str  # the Host header
    path: str  # path and query

    @property
    def origin(self) -> Origin:
        return (self.scheme, self.host, self.port)


def target_of(url: str) -> Target | None:
    """The Target for an http(s) URL this client can send to; None for one it leaves to aiohttp
    (credentials in the URL, a non-ASCII host)."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    if not (host.isascii() and parts.netloc.isascii()):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if not path.isascii() or any(c in path for c in " \r\n"):
        return None
    return Target(parts.scheme, host, port, parts.netloc, path)


class Response:
    """One answer: status and headers at once, the body as it arrives.

    `read_nowait`, `at_eof` and `readany` read the body (the names aiohttp's StreamReader uses,
    so the relay reads both alike); `release` hands a fully read connection back to the pool and
    closes any other; `close` closes it."""

    def __init__(self, conn: _Connection, status: int, headers: CIMultiDict[str]) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers
        self._released = False

    @property
    def content(self) -> Response:
        return self

    def read_nowait(self) -> bytes:
        return self._conn.take()

    def at_eof(self) -> bool:
        return self._conn.at_eof()

    async def readany(self) -> bytes:
        return await self._conn.read()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._conn.finish()

    def close(self) -> None:
        """Close the connection, unless the answer was released (the connection may be
        serving another request by now)."""
        if not self._released:
            self._released = True
            self._conn.close()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; the protocol for its transport and the parser's callbacks."""

    def __init__(self, pool: Pool, key: Origin) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.dead = False
        self.idle_since = 0.0
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        loop = asyncio.get_running_loop()
        self._head: asyncio.Future[tuple[int, CIMultiDict[str]]] = loop.create_future()
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._head_bytes = 0
        self._headers_done = False
        self._until_close = False  # the body ends when the upstream closes the connection
        self._keep_alive = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: ConnectionBroken | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._trailer_bytes = 0
        self.received = False
        self.sent_at = 0.0
        self.lost_at = 0.0

    # -- the request --------------------------------------------------------------------------

    async def exchange(self, head: bytes, body: bytes) -> Response:
        if self.reused:
            self._parser = httptools.HttpResponseParser(self)
            self._reset()
        assert self.transport is not None
        self.sent_at = time.monotonic()
        self.transport.writelines((head, body))
        try:
            status, headers = await self._head
        except BaseException:  # broken, or the caller gave up waiting: never reused
            self.close()
            raise
        return Response(self, status, headers)

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        if not self._headers_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the upstream switched protocols")
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(str(cause) if isinstance(cause, ConnectionBroken) else str(exc))
        except httptools.HttpParserError as exc:
            self._fail(f"the upstream sent malformed HTTP ({exc})")
        if not self._headers_done and self._head_bytes > HEAD_LIMIT:
            self._fail(f"the upstream's response headers exceed {HEAD_LIMIT} bytes")

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        self.lost_at = time.monotonic()
        self._pool.forget(self)
        if self._complete:
            return
        if self._headers_done and self._until_close and exc is None:
            self._complete = True
            self._wake()
            return
        why = f": {exc}" if exc else ""
        self._fail(f"the upstream closed the connection{why}")

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # raised through httptools: data_received fails the connection
            raise ConnectionBroken("the upstream sent more than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:  # a chunked trailer: dropped, but counted
            self._trailer_bytes += len(name) + len(value)
            if self._trailer_bytes > HEAD_LIMIT:
                raise ConnectionBroken(f"the upstream's trailers exceed {HEAD_LIMIT} bytes")
            return
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational: the answer follows
            self._headers = CIMultiDict()
            return
        self._headers_done = True
        self._keep_alive = self._parser.should_keep_alive()  # read now: llhttp resets it later
        self._until_close = (
            "content-length" not in self._headers
            and "chunked" not in self._headers.get("transfer-encoding", "").lower()
        )
        if not self._head.done():
            self._head.set_result((status, self._headers))

    def on_body(self, body: bytes) -> None:
        chunk = bytes(body)
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > READ_AHEAD and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._headers_done:
            self._complete = True
            self._wake()

    # -- reading the body -----------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = ConnectionBroken(message)
        if not self._head.done():
            self._head.set_exception(self._error)
        self._wake()
        self.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take(self) -> bytes:
        if not self._chunks:
            if self._error is not None and not self._complete:
                raise self._error
            return b""
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def at_eof(self) -> bool:
        return self._complete and not self._chunks

    async def read(self) -> bytes:
        while not self._chunks and not self._complete and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.take()

    def finish(self) -> None:
        """Back to the pool if the answer was read to its end on a keep-alive connection."""
        if (
            self._complete
            and not self._chunks
            and not self.dead
            and self._error is None
            and self._keep_alive
            and self.transport is not None
            and not self.transport.get_write_buffer_size()  # the request went out whole
        ):
            self.reused = True
            self._pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections per origin, for one event loop."""

    def __init__(self, resolver: UpstreamResolver) -> None:
        self._resolver = resolver
        self._idle: dict[Origin, list[_Connection]] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(
        self, url: Target, headers: dict[str, str], body: bytes, connect_timeout: float
    ) -> Response:
        head = _request_head(url, headers, len(body))
        conn = self._take_idle(url.origin)
        if conn is not None:
            try:
                return await conn.exchange(head, body)
            except ConnectionBroken:
                if conn.received or conn.lost_at - conn.sent_at > IDLE_CLOSE_RACE:
                    raise
                # the server's idle close crossed the request: once more, on a new connection
        conn = await self._connect(url, connect_timeout)
        return await conn.exchange(head, body)

    def _take_idle(self, key: Origin) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.dead and now - conn.idle_since < IDLE_TTL:
                return conn
            conn.close()
        return None

    def put(self, conn: _Connection) -> None:
        now = conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(conn.key, [])
        while idle and now - idle[0].idle_since >= IDLE_TTL:  # the oldest, unused since a burst
            idle.pop(0).close()
        idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def _connect(self, url: Target, within: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = url.scheme == "https"
        conn = _Connection(self, url.origin)
        try:
            async with asyncio.timeout(within):
                addresses = await self._addresses(url.host, url.port)
                sock = await aiohappyeyeballs.start_connection(
                    [_addr_info(a, url.port) for a in addresses],
                    happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                )
                try:
                    await loop.create_connection(
                        lambda: conn,
                        sock=sock,
                        ssl=self._tls() if tls else None,
                        server_hostname=url.host if tls else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise ConnectionBroken(f"no connection within {within:g}s") from None
        except OSError as exc:
            raise ConnectionBroken(str(exc)) from exc
        return conn

    async def _addresses(self, host: str, port: int) -> list[str]:
        literal = literal_ip(host)
        if literal is not None:  # any inet_aton form; check_upstream_url checked it, no lookup
            return [str(literal)]
        key = (host, port)
        now = time.monotonic()
        cached = self._dns.get(key)
        if cached is not None and now - cached[0] < DNS_TTL:
            return cached[1]
        try:
            results = await self._resolver.resolve(host, port, 0)  # type: ignore[arg-type]
        except OSError as exc:
            raise ConnectionBroken(str(exc)) from exc
        addresses = list(dict.fromkeys(str(r["host"]) for r in results))
        self._dns[key] = (now, addresses)
        return addresses

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _request_head(url: Target, headers: dict[str, str], length: int) -> bytes:
    lines = [f"POST {url.path} HTTP/1.1", f"Host: {url.netloc}", f"Content-Length: {length}"]
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0"):
            raise ConnectionBroken(f"refused to send header {name!r}: it holds a line break")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ConnectionBroken(f"a request header is not Latin-1 text ({exc.reason})") from None


def _addr_info(address: str, port: int) -> aiohappyeyeballs.AddrInfoType:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
