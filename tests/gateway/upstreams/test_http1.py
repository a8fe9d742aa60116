"""The relay's lean HTTP/1.1 client (gateway/upstreams/http1.py) against real servers on
127.0.0.1 that misbehave in the ways upstreams do: keep-alive reuse, an idle connection the
server closed, bodies delimited by Content-Length, chunks or the connection's close, truncated
bodies, huge heads, informational answers, header injection through a stored key, TLS with a
certificate that is and is not trusted, and a host that resolves to a metadata address.

HTTP/1.1 framing as RFC 9112 §6.3 defines it (message body length), which llhttp implements."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.security.ssrf import Allow
from gateway.security.upstream_urls import UpstreamResolver
from gateway.upstreams import http1
from gateway.upstreams.base import Endpoint, UpstreamRequest, UpstreamUnavailable
from gateway.upstreams.openai_compat import OpenAICompatUpstream

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A raw TCP server; `connections` counts accepted connections, `heads` the request heads."""

    def __init__(self, answer: Handler | bytes, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.connections = 0
        self.heads: list[bytes] = []
        self.port = 0

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return await reader.readexactly(length)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if callable(self.answer):
                await self.answer(reader, writer)
            else:
                while True:
                    await self.read_request(reader)
                    writer.write(self.answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def pool(**kw: object) -> http1.Pool:
    return http1.Pool(UpstreamResolver(Allow.of(())))


def target(port: int, scheme: str = "http", host: str = "127.0.0.1") -> http1.Target:
    found = http1.target_of(f"{scheme}://{host}:{port}/v1/chat/completions")
    assert found is not None
    return found


async def body_of(resp: http1.Response) -> bytes:
    chunks = []
    while not resp.at_eof():
        chunks.append(await resp.readany())
    resp.release()
    return b"".join(chunks)


async def test_a_keep_alive_connection_carries_many_requests():
    async with Server(OK) as srv:
        p = pool()
        for _ in range(5):
            resp = await p.post(target(srv.port), {"X-A": "1"}, b'{"model":"m"}', 5)
            assert (resp.status, await body_of(resp)) == (200, b"{}")
        assert srv.connections == 1
        head = srv.heads[0].decode()
        assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{srv.port}\r\n" in head and "Content-Length: 13\r\n" in head
        p.close()


async def test_closing_a_released_answer_leaves_its_pooled_connection_alone():
    """The relay closes every stream's answer when the stream ends, released or not."""
    async with Server(OK) as srv:
        p = pool()
        for _ in range(3):
            resp = await p.post(target(srv.port), {}, b"{}", 5)
            assert await body_of(resp) == b"{}"  # read to its end and released
            resp.close()
        assert srv.connections == 1
        resp = await p.post(target(srv.port), {}, b"{}", 5)
        resp.close()  # not read: the connection goes
        resp = await p.post(target(srv.port), {}, b"{}", 5)
        assert await body_of(resp) == b"{}"
        assert srv.connections == 2
        p.close()


async def test_an_idle_connection_the_server_closed_is_not_used():
    """The server answers as keep-alive, then closes: the next request opens a new one."""

    async def once(reader, writer):
        await srv.read_request(reader)
        writer.write(OK)
        await writer.drain()

    srv = Server(once)
    async with srv:
        p = pool()
        for _ in range(3):
            resp = await p.post(target(srv.port), {}, b"{}", 5)
            assert await body_of(resp) == b"{}"
            await asyncio.sleep(0.05)  # the close reaches the client
        assert srv.connections == 3
        p.close()


async def test_a_reused_connection_that_breaks_before_any_answer_is_retried_once():
    """The race the previous test avoids by waiting: the server reads the second request on a
    kept-alive connection and closes it without a byte, as a server closing an idle connection
    does. One retry on a new connection; a new connection that breaks alike is an error."""

    async def flaky(reader, writer):
        await srv.read_request(reader)
        writer.write(OK)
        await writer.drain()
        await srv.read_request(reader)  # then close without answering

    srv = Server(flaky)
    async with srv:
        p = pool()
        assert await body_of(await p.post(target(srv.port), {}, b"{}", 5)) == b"{}"
        # reused, broken, retried on a new connection which answers
        assert await body_of(await p.post(target(srv.port), {}, b"{}", 5)) == b"{}"
        assert srv.connections == 2

    async def silent(reader, writer):
        await srv2.read_request(reader)

    srv2 = Server(silent)
    async with srv2:
        with pytest.raises(http1.ConnectionBroken, match="closed the connection"):
            await p.post(target(srv2.port), {}, b"{}", 5)
        assert srv2.connections == 1  # a new connection is not retried
    p.close()


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
        ),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the close", b"until the close"),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the close", b"until the close"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"abc"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["chunked", "http1.0-close", "connection-close", "informational-first", "no-content"],
)
async def test_every_body_framing_is_read_to_its_end(answer, body):
    async def reply(reader, writer):
        await srv.read_request(reader)
        writer.write(answer)
        await writer.drain()
        if b"Content-Length" not in answer and b"chunked" not in answer:
            writer.close()  # the close ends the body
        else:
            await reader.read()

    srv = Server(reply)
    async with srv:
        p = pool()
        resp = await asyncio.wait_for(p.post(target(srv.port), {}, b"{}", 5), 5)
        assert await asyncio.wait_for(body_of(resp), 5) == body
        p.close()


async def test_a_body_cut_short_of_its_content_length_is_an_error_not_a_short_answer():
    async def short(reader, writer):
        await srv.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly this"
        )
        await writer.drain()

    srv = Server(short)
    async with srv:
        p = pool()
        resp = await p.post(target(srv.port), {}, b"{}", 5)
        with pytest.raises(http1.ConnectionBroken, match="closed the connection"):
            await body_of(resp)
        p.close()


async def test_malformed_http_and_a_huge_head_are_errors():
    async def garbage(reader, writer):
        await srv.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def huge(reader, writer):
        await srv2.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(10_000):  # ~200 KB of headers, never ending
            writer.write(f"X-Filler-{i}: {'y' * 10}\r\n".encode())
        await writer.drain()
        await reader.read()

    srv, srv2 = Server(garbage), Server(huge)
    async with srv, srv2:
        p = pool()
        with pytest.raises(http1.ConnectionBroken, match="malformed HTTP"):
            await asyncio.wait_for(p.post(target(srv.port), {}, b"{}", 5), 5)
        with pytest.raises(http1.ConnectionBroken, match="headers exceed"):
            await asyncio.wait_for(p.post(target(srv2.port), {}, b"{}", 5), 5)
        p.close()


async def test_a_fast_upstream_cannot_fill_memory_ahead_of_a_slow_reader():
    """The socket stops being read once READ_AHEAD bytes wait for the reader."""
    size = 32 * 1024 * 1024

    async def flood(reader, writer):
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()

    srv = Server(flood)
    async with srv:
        p = pool()
        resp = await p.post(target(srv.port), {}, b"{}", 5)
        await asyncio.sleep(0.5)  # the reader is slow; the server keeps writing
        waiting = resp.read_nowait()
        assert len(waiting) <= http1.READ_AHEAD + 256 * 1024  # one socket read past the mark
        total = len(waiting)
        while not resp.at_eof():
            total += len(await resp.readany())
        assert total == size  # and nothing was lost by pausing
        resp.release()
        p.close()


async def test_a_stored_key_with_a_line_break_is_never_sent():
    """An api key `k\\r\\nX-Admin: 1` must not become a second header."""
    async with Server(OK) as srv:
        upstream = OpenAICompatUpstream()
        endpoint = Endpoint(1, "c", "openai", f"http://127.0.0.1:{srv.port}/v1", "k\r\nX-Admin: 1")
        request = UpstreamRequest("chat", "m", False, {"model": "m"}, b'{"model":"m"}')
        with pytest.raises(UpstreamUnavailable, match="line break"):
            await upstream.send(request, endpoint)
        assert srv.heads == []
        await upstream.aclose()


async def test_bytes_after_an_answer_break_the_connection_instead_of_joining_an_answer():
    """A hostile upstream appends a second answer: it must not end up in this answer's body or
    headers, nor be read as the next request's answer (response desync)."""

    async def two_answers(reader, writer):
        while True:
            await srv.read_request(reader)
            writer.write(
                OK + b"HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\nContent-Length: 9\r\n\r\nSMUGGLED!"
            )
            await writer.drain()

    srv = Server(two_answers)
    async with srv:
        p = pool()
        for _ in range(3):
            resp = await p.post(target(srv.port), {}, b"{}", 5)
            assert await body_of(resp) == b"{}"
            assert "X-Smuggled" not in resp.headers
        assert srv.connections == 3  # each broken connection was closed, never reused
        p.close()


async def test_chunked_trailers_are_dropped_and_bounded():
    async def trailers(reader, writer):
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n")
        for i in range(200):  # ~200 KB of trailers
            writer.write(f"X-Trailer-{i}: {'t' * 1000}\r\n".encode())
        writer.write(b"\r\n")
        await writer.drain()
        await reader.read()

    srv = Server(trailers)
    async with srv:
        p = pool()
        resp = await p.post(target(srv.port), {}, b"{}", 5)
        with pytest.raises(http1.ConnectionBroken, match="trailers exceed"):
            await asyncio.wait_for(body_of(resp), 5)
        assert not [k for k in resp.headers if k.startswith("X-Trailer")]
        p.close()


async def test_a_request_the_upstream_worked_on_before_dying_is_never_sent_twice():
    """Only a close that crosses the request (within IDLE_CLOSE_RACE) is retried; an upstream
    that read the request, worked on it and died may have done the work (and billed it)."""
    seen = []

    async def dies_after_work(reader, writer):
        seen.append(await srv.read_request(reader))
        writer.write(OK)
        await writer.drain()
        seen.append(await srv.read_request(reader))
        await asyncio.sleep(0.3)  # generating...
        writer.transport.abort()

    srv = Server(dies_after_work)
    async with srv:
        p = pool()
        assert await body_of(await p.post(target(srv.port), {}, b'{"n":1}', 5)) == b"{}"
        with pytest.raises(http1.ConnectionBroken, match="closed the connection"):
            await p.post(target(srv.port), {}, b'{"n":2}', 5)
        await asyncio.sleep(0.1)
        assert seen == [b'{"n":1}', b'{"n":2}'] and srv.connections == 1
        p.close()


async def test_an_answer_before_the_whole_request_was_sent_closes_the_connection():
    """An upstream refuses an 8 MB body after its head: the unsent rest must not prefix the
    next request on a pooled connection."""

    async def early(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(1)

    srv = Server(early)
    async with srv:
        p = pool()
        resp = await p.post(target(srv.port), {}, b"x" * 8 * 1024 * 1024, 5)
        assert (resp.status, await body_of(resp)) == (401, b"{}")
        assert p._take_idle(target(srv.port).origin) is None
        p.close()


async def test_connections_are_shared_by_every_path_of_an_origin():
    async with Server(OK) as srv:
        p = pool()
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/rerank"):
            url = http1.target_of(f"http://127.0.0.1:{srv.port}{path}")
            assert url is not None
            assert await body_of(await p.post(url, {}, b"{}", 5)) == b"{}"
        assert srv.connections == 1
        p.close()


async def test_a_blackholed_first_address_does_not_cost_the_connect_timeout():
    """Happy Eyeballs (RFC 8305): the next address is tried 0.25 s later, not after the whole
    connect timeout. 127.0.0.2 is a listener whose accept queue is full (SYNs go nowhere)."""
    async with Server(OK) as srv:
        hole = socket.socket()
        hole.bind(("127.0.0.2", srv.port))
        hole.listen(0)
        fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.2", srv.port))
            fillers.append(c)
        await asyncio.sleep(0.2)

        class TwoAddresses:
            async def resolve(self, host, port=0, family=socket.AF_INET):
                return [
                    {
                        "hostname": host,
                        "host": a,
                        "port": port,
                        "family": socket.AF_INET,
                        "proto": 0,
                        "flags": 0,
                    }
                    for a in ("127.0.0.2", "127.0.0.1")
                ]

            async def close(self):
                pass

        resolver = UpstreamResolver(Allow.of(()))
        resolver._inner = TwoAddresses()  # type: ignore[assignment]
        p = http1.Pool(resolver)
        started = time.monotonic()
        resp = await p.post(target(srv.port, host="dual.example"), {}, b"{}", 10)
        assert await body_of(resp) == b"{}"
        assert time.monotonic() - started < 5  # not the 10 s connect timeout
        p.close()
        for c in (hole, *fillers):
            c.close()


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_verifies_the_certificate_and_the_host_name(tmp_path, monkeypatch):
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with Server(OK, tls=server_tls) as srv:
        untrusting = pool()
        with pytest.raises(http1.ConnectionBroken, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.post(target(srv.port, "https", "localhost"), {}, b"{}", 5)
        untrusting.close()

        # the system trust store, as an admin sets it
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusting = pool()
        resp = await trusting.post(target(srv.port, "https", "localhost"), {}, b"{}", 5)
        assert (resp.status, await body_of(resp)) == (200, b"{}")
        resp = await trusting.post(target(srv.port, "https", "localhost"), {}, b"{}", 5)
        assert await body_of(resp) == b"{}"
        assert srv.connections == 1  # (the refused handshake never reached it): kept alive
        trusting.close()


async def test_a_host_name_that_resolves_to_a_metadata_address_is_refused():
    """The resolver's check (gateway/security/upstream_urls.py) runs for this client's lookups;
    the name's answer is what a hostile DNS record would give."""

    class MetadataDNS:
        async def resolve(self, host, port=0, family=socket.AF_INET):
            return [
                {
                    "hostname": host,
                    "host": "169.254.169.254",
                    "port": port,
                    "family": family,
                    "proto": 0,
                    "flags": 0,
                }
            ]

        async def close(self):
            pass

    resolver = UpstreamResolver(Allow.of(()))
    resolver._inner = MetadataDNS()  # type: ignore[assignment]
    p = http1.Pool(resolver)
    with pytest.raises(http1.ConnectionBroken, match="cloud metadata address"):
        await p.post(target(80, "http", "innocent.example"), {}, b"{}", 5)
    p.close()


def test_urls_it_leaves_to_aiohttp():
    assert http1.target_of("http://user:pw@host/v1/chat/completions") is None
    assert http1.target_of("http://bücher.example/v1/chat/completions") is None
    assert http1.target_of("ftp://host/v1") is None
    t = http1.target_of("https://[::1]:8443/v1/x?api-version=1")
    assert t is not None and (t.host, t.port, t.netloc, t.path) == (
        "::1",
        8443,
        "[::1]:8443",
        "/v1/x?api-version=1",
    )


@pytest.mark.parametrize(
    "scenario",
    [
        test_a_keep_alive_connection_carries_many_requests,
        test_closing_a_released_answer_leaves_its_pooled_connection_alone,
        test_an_idle_connection_the_server_closed_is_not_used,
        test_a_reused_connection_that_breaks_before_any_answer_is_retried_once,
        test_a_body_cut_short_of_its_content_length_is_an_error_not_a_short_answer,
        test_malformed_http_and_a_huge_head_are_errors,
        test_a_fast_upstream_cannot_fill_memory_ahead_of_a_slow_reader,
        test_bytes_after_an_answer_break_the_connection_instead_of_joining_an_answer,
        test_a_request_the_upstream_worked_on_before_dying_is_never_sent_twice,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
def test_the_same_under_uvloop(scenario):
    """`modelport serve` runs uvloop, whose transports differ from asyncio's."""
    uvloop.run(scenario())
