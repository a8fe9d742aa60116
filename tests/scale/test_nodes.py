"""Two `modelport node` processes serve the same model UID (fake engine) behind one gateway:
load spreads over both; killing one moves every request to the other, none failing, and the dead
node leaves routing once its heartbeats stop."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Gateway
from tests.scale.procs import Node, beat, connected, ready_nodes, wait_for
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)

MODEL = "smollm2-135m-instruct"
NODE_TOKEN = "node-shared-secret-0123456789"
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def cluster(make_gateway, tmp_path: Path) -> Iterator[tuple[Gateway, dict[str, Node]]]:
    gw = make_gateway(node_token=NODE_TOKEN, node_ttl_s=2.0)
    nodes = {n: Node(tmp_path / n, gateway=gw.url, token=NODE_TOKEN, node_id=n) for n in ("a", "b")}
    connected(gw, set(nodes))
    yield gw, nodes
    for node in nodes.values():
        node.stop()


def _channels(gw: Gateway, token: str) -> Counter[str]:
    gw.flush_usage()
    rows = gw.api("GET", "/api/log/", params={"token_name": token, "page_size": 1000})
    return Counter(r["channel_name"] for r in rows if r["status"] == 200)


def test_heartbeat_needs_a_node_token(gateway):
    r = httpx.post(f"{gateway.url}/api/nodes/heartbeat", json={"node_id": "x"})
    assert r.status_code == 401
    assert beat(gateway.url, "nt-wrong", {"node_id": "x"}).status_code == 401
    issued = gateway.api("POST", "/api/nodes/tokens", json={"name": "x"})["token"]
    r = beat(gateway.url, issued, {"node_id": "x"})
    assert r.status_code == 200 and r.json()["data"]["desired"] == []
    assert "x" in {n["node_id"] for n in gateway.api("GET", "/api/nodes")}
    gateway.api("DELETE", "/api/nodes/tokens/x")
    assert beat(gateway.url, issued, {"node_id": "x"}).status_code == 401


def test_two_nodes_share_a_uid_and_a_killed_node_fails_over(cluster):
    gw, nodes = cluster
    for name in nodes:
        body = {"model_name": MODEL, "model_uid": "chat", "model_engine": "fake", "node": name}
        assert gw.api("POST", "/api/nodes/models", json=body) == {"model_uid": "chat", "node": name}
    wait_for(lambda: ready_nodes(gw, "chat") == {"a", "b"}, "both nodes serving chat", 120)
    key = gw.create_token(name="load")
    client = gw.openai(key)
    models = [m.id for m in client.models.list().data]
    assert "chat" in models

    for _ in range(40):
        client.chat.completions.create(model="chat", messages=MSG)
    spread = _channels(gw, "load")
    assert spread["node:a"] >= 5 and spread["node:b"] >= 5, spread

    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def hammer() -> None:
        c = gw.openai(key)
        while not done.is_set():
            try:
                if count[0] % 2:
                    text = "".join(
                        ch.choices[0].delta.content or ""
                        for ch in c.chat.completions.create(model="chat", messages=MSG, stream=True)
                        if ch.choices
                    )
                    assert text
                else:
                    c.chat.completions.create(model="chat", messages=MSG)
            except (openai.APIError, AssertionError) as exc:
                failures.append(repr(exc))
            count[0] += 1

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: count[0] > 20, "traffic before the kill", 30)
        nodes["a"].kill()
        wait_for(lambda: "a" not in ready_nodes(gw, "chat"), "node a out of routing", 15)
        before = count[0]
        wait_for(lambda: count[0] > before + 20, "traffic after the drop", 30)
    finally:
        done.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:5]

    gw2 = gw.create_token(name="after")
    c = gw.openai(gw2)
    for _ in range(10):
        c.chat.completions.create(model="chat", messages=MSG)
    assert _channels(gw, "after") == Counter({"node:b": 10})


def test_removing_a_placement_stops_the_worker(cluster):
    gw, nodes = cluster
    nodes["b"].stop()
    body = {"model_name": MODEL, "model_uid": "emb", "model_engine": "fake", "node": "a"}
    gw.api("POST", "/api/nodes/models", json=body)
    wait_for(lambda: ready_nodes(gw, "emb") == {"a"}, "emb on a", 120)
    assert {"uid": "emb", "node": "a"}.items() <= gw.api("GET", "/api/nodes/models")[0].items()
    gw.api("DELETE", "/api/nodes/a/models/emb")
    wait_for(lambda: not ready_nodes(gw, "emb"), "emb stopped", 60)
    key = gw.create_token(name="gone")
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "emb", "messages": MSG},
    )
    assert r.status_code == 404
