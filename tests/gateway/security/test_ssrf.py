"""The SSRF guard: caller URLs never reach private, loopback, link-local or metadata addresses,
whatever the spelling, the DNS answer or the redirect chain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from gateway.security.ssrf import FetchRefused, literal_ip, safe_fetch
from tests.support.servers import ServerThread


class Target:
    def __init__(self) -> None:
        self.hits: list[str] = []
        app = FastAPI()

        @app.get("/img")
        async def img(request: Request) -> Response:
            self.hits.append(request.headers.get("host", ""))
            return Response(b"PNGDATA", media_type="image/png")

        @app.get("/big")
        async def big() -> Response:
            return Response(b"x" * 100_000)

        @app.get("/go")
        async def go(to: str) -> Response:
            return RedirectResponse(to, status_code=302)

        self.server = ServerThread(app).start()
        self.port = self.server.port


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.server.stop()


def fetch(url: str, **kw):
    kw.setdefault("max_bytes", 10_000)
    kw.setdefault("timeout_s", 10)
    return asyncio.run(safe_fetch(url, **kw))


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.5",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "[::1]",
        "[::]",
        "[fd00:ec2::254]",  # AWS IPv6 metadata
        "[fe80::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped loopback
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "224.0.0.1",  # multicast
        "2130706433",  # decimal 127.0.0.1
        "0177.0.0.1",  # octal
        "0x7f.1",  # hex, short form
        "017700000001",  # octal whole
    ],
)
def test_private_and_special_addresses_are_refused(target, host):
    before = len(target.hits)
    with pytest.raises(FetchRefused):
        fetch(f"http://{host}:{target.port}/img")
    assert len(target.hits) == before  # refused before connecting


@pytest.mark.parametrize(
    ("spelling", "meant"),
    [("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1")],
)
def test_numeric_spellings_are_read_as_addresses(spelling, meant):
    assert str(literal_ip(spelling)) == meant


def test_dns_name_resolving_to_loopback_is_refused(target):
    async def evil(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    with pytest.raises(FetchRefused, match=r"127\.0\.0\.1"):
        fetch(f"http://evil.example:{target.port}/img", resolve=evil)
    with pytest.raises(FetchRefused):  # the real resolver, too
        fetch(f"http://localhost:{target.port}/img")


def test_every_resolved_address_is_checked():
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]

    with pytest.raises(FetchRefused, match=r"10\.0\.0\.7"):
        fetch("http://mixed.example/img", resolve=mixed)


def test_connects_only_to_the_checked_address(target):
    """No second DNS lookup between check and connect: the resolver is asked once per hop and
    aiohttp connects to exactly what was checked."""
    calls: list[str] = []

    async def once(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.9.9.9"]

    got = fetch(
        f"http://images.internal:{target.port}/img", resolve=once, allow=["images.internal"]
    )
    assert got.body == b"PNGDATA" and calls == ["images.internal"]
    assert target.hits[-1].startswith("images.internal")  # Host header kept


def test_allow_list_by_cidr_lets_one_through(target):
    got = fetch(f"http://127.0.0.1:{target.port}/img", allow=["127.0.0.0/8"])
    assert got.status == 200 and got.body == b"PNGDATA"


def test_redirect_to_metadata_is_refused(target):
    url = f"http://127.0.0.1:{target.port}/go?to=http://169.254.169.254/latest/meta-data/"
    with pytest.raises(FetchRefused, match=r"169\.254\.169\.254"):
        fetch(url, allow=["127.0.0.1/32"])


def test_redirect_to_an_allowed_host_is_followed_and_counted(target):
    final = f"http://127.0.0.1:{target.port}/img"
    got = fetch(f"http://127.0.0.1:{target.port}/go?to={final}", allow=["127.0.0.1/32"])
    assert got.body == b"PNGDATA" and got.url == final
    loop = f"http://127.0.0.1:{target.port}/go?to=/go%3Fto%3D/go%3Fto%3D/img"
    with pytest.raises(FetchRefused, match="too many redirects"):
        fetch(loop, allow=["127.0.0.1/32"], max_redirects=1)


def test_body_size_is_capped(target):
    with pytest.raises(FetchRefused, match="larger than"):
        fetch(f"http://127.0.0.1:{target.port}/big", allow=["127.0.0.1/32"], max_bytes=1000)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "http:///nohost"])
def test_only_http_urls(url):
    with pytest.raises(FetchRefused):
        fetch(url)


def test_the_app_exposes_the_guard_with_its_settings(make_gateway, target):
    gw = make_gateway(fetch_allow=["127.0.0.1/32"], fetch_max_bytes=1000)
    loop = gw.server.server_loop
    ok = asyncio.run_coroutine_threadsafe(
        gw.app.state.services.fetch(f"http://127.0.0.1:{target.port}/img"), loop
    ).result(10)
    assert ok.body == b"PNGDATA"
    with pytest.raises(FetchRefused):
        asyncio.run_coroutine_threadsafe(
            gw.app.state.services.fetch(f"http://127.0.0.1:{target.port}/big"), loop
        ).result(10)
    with pytest.raises(FetchRefused):
        asyncio.run_coroutine_threadsafe(
            gw.app.state.services.fetch("http://169.254.169.254/"), loop
        ).result(10)
