"""Two installations on one Redis server, told apart only by database number (issue 20): Redis
pub/sub ignores database numbers, so installation one's auto-disable of its channel 2 used to
drop installation two's channel 2 as well. Every channel name and key is now namespaced by
installation (gateway.cluster.namespace)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import REDIS_URL
from tests.scale.procs import wait_for

MSG = [{"role": "user", "content": "hi"}]


def _chat(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": MSG},
        timeout=30,
    )


def test_installations_sharing_a_redis_server_do_not_disable_each_others_channels(
    make_gateway, fake_upstreams, tmp_path: Path
):
    server = REDIS_URL.rsplit("/", 1)[0]
    one = {"database_url": f"sqlite:///{tmp_path / 'one.db'}", "redis_url": f"{server}/1"}
    two = {"database_url": f"sqlite:///{tmp_path / 'two.db'}", "redis_url": f"{server}/2"}
    a = make_gateway(**one)
    a2 = make_gateway(**one)  # a second replica of installation one: it must hear a's message
    b = make_gateway(**two)
    bad, good = fake_upstreams("bad"), fake_upstreams("good")
    bad.reset(status=401, error_code="invalid_api_key")
    ch_a = a.add_channel(name="one", base_url=bad.url, models="m")
    ch_b = b.add_channel(name="two", base_url=good.url, models="m")
    assert ch_a["id"] == ch_b["id"]  # the same channel id in both installations
    key_a, key_b = a.create_token(name="a"), b.create_token(name="b")
    assert _chat(b.url, key_b).status_code == 200

    drops = {"a2": [], "b": []}
    for name, gw in (("a2", a2), ("b", b)):
        bus = gw.app.state.services.bus
        bus.on("drop_channel", _spy(drops[name], bus._handlers["drop_channel"]))

    assert _chat(a.url, key_a).status_code == 401  # the upstream refuses a's key: auto-disable
    wait_for(lambda: drops["a2"], "installation one's other replica told", 10)
    assert drops["b"] == []
    assert _chat(b.url, key_b).status_code == 200


def _spy(seen: list, handler):
    async def spy(msg):
        seen.append(msg)
        await handler(msg)

    return spy
