"""The cluster secret between gateways and GPU nodes (gateway.cluster.secret), with real
`modelport node` processes: a node's workers refuse callers without their own derived key (the
secret itself opens nothing), the gateway that holds the secret derives it and relays to them
(official openai client), a node with another secret is refused at its heartbeat, and a node
without one will not expose its workers beyond loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.cluster.secret import require_secret, worker_key
from tests.conftest import Gateway
from tests.scale.procs import Node, beat, connected, ready_nodes, wait_for
from tests.support.starter_models import MINILM_MISSING, SMOLLM2_MISSING, minilm_dir, smollm2_gguf

MODEL = "smollm2-135m-instruct"
NODE_TOKEN = "node-shared-secret-0123456789"
SECRET = "cluster-secret-for-tests-0123456789abcdef"
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def test_a_node_without_a_secret_will_not_expose_workers(tmp_path: Path, nodes: list[Node]):
    node = Node(
        tmp_path / "open",
        gateway="http://127.0.0.1:9",
        token=NODE_TOKEN,
        node_id="open",
        bind_host="0.0.0.0",  # exactly what must be refused
    )
    nodes.append(node)
    assert node.proc.wait(120) != 0
    assert "refusing to serve workers on 0.0.0.0 without a cluster secret" in node.tail()


def test_only_loopback_addresses_may_go_without_a_secret():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        require_secret(host, None)
    for host in ("0.0.0.0", "::", "10.0.0.21", "gpu-a.internal"):
        with pytest.raises(ValueError, match="MODELPORT_CLUSTER_SECRET"):
            require_secret(host, None)
        require_secret(host, SECRET)


def test_the_heartbeat_must_be_signed_with_the_gateways_secret(make_gateway):
    gw = make_gateway(node_token=NODE_TOKEN, cluster_secret=SECRET)
    body = {"node_id": "x"}

    r = beat(gw.url, NODE_TOKEN, body)  # signed with the token only: no secret on the node
    assert r.status_code == 401
    assert "requires the cluster secret" in r.json()["message"]
    r = beat(gw.url, NODE_TOKEN, body, secret="some-other-secret")
    assert r.status_code == 401 and "different cluster secret" in r.json()["message"]
    assert "x" not in {n["node_id"] for n in gw.api("GET", "/api/nodes")}

    r = beat(gw.url, NODE_TOKEN, body, secret=SECRET)
    assert r.status_code == 200 and r.json()["success"] is True

    plain = make_gateway(node_token=NODE_TOKEN)
    r = beat(plain.url, NODE_TOKEN, body, secret=SECRET)
    assert r.status_code == 401 and "this gateway has none" in r.json()["message"]


@pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)
def test_workers_answer_only_the_gateways(make_gateway, tmp_path: Path, nodes: list[Node]):
    gw: Gateway = make_gateway(node_token=NODE_TOKEN, cluster_secret=SECRET, node_ttl_s=2.0)
    nodes.append(Node(tmp_path / "a", gateway=gw.url, token=NODE_TOKEN, node_id="a", secret=SECRET))
    other = Node(tmp_path / "z", gateway=gw.url, token=NODE_TOKEN, node_id="z", secret="not-it")
    nodes.append(other)
    connected(gw, {"a"})
    body = {"model_name": MODEL, "model_uid": "chat", "model_engine": "fake", "node": "a"}
    gw.api("POST", "/api/nodes/models", json=body)
    wait_for(lambda: ready_nodes(gw, "chat") == {"a"}, "chat ready on a", 120)
    (record,) = [n for n in gw.api("GET", "/api/nodes") if n["node_id"] == "a"]
    base_url = record["workers"][0]["base_url"]
    assert SECRET not in str(record)

    call = {"model": "chat", "messages": MSG}
    for headers in (
        {},
        {"Authorization": "Bearer not-the-secret"},
        {"Authorization": f"Bearer {SECRET}"},  # the cluster secret itself opens nothing
        {"Authorization": f"Bearer {worker_key(SECRET, 'z', record['workers'][0]['key_id'])}"},
    ):
        r = httpx.post(f"{base_url}/chat/completions", json=call, headers=headers)
        assert r.status_code == 401, r.text
        error = r.json()["error"]
        assert error["type"] == "authentication_error"
        assert error["code"] == "invalid_worker_key"
        assert "call the gateway instead" in error["message"]
    health = f"{base_url.removesuffix('/v1')}/health"
    assert httpx.get(health).status_code == 401
    own = {"Authorization": f"Bearer {worker_key(SECRET, 'a', record['workers'][0]['key_id'])}"}
    assert httpx.get(health, headers=own).json()["status"] == "ready"
    assert httpx.post(f"{base_url}/chat/completions", json=call, headers=own).status_code == 200

    client = gw.openai(gw.create_token(name="user"))
    assert client.chat.completions.create(model="chat", messages=MSG).choices[0].message.content
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model="chat", messages=MSG, stream=True)
        if chunk.choices
    )
    assert streamed

    wait_for(lambda: "different cluster secret" in other.tail(), "node z told why", 60)
    assert other.alive()
    assert "z" not in {n["node_id"] for n in gw.api("GET", "/api/nodes")}
    logs = list((tmp_path / "a").rglob("*.log"))  # the node's and its worker's
    assert len(logs) >= 2 and not [f for f in logs if SECRET in f.read_text(errors="replace")]


@pytest.mark.skipif(minilm_dir() is None, reason=MINILM_MISSING)
def test_http_fronts_of_a_node_worker_check_the_secret_too(
    make_gateway, tmp_path: Path, nodes: list[Node]
):
    """With `http_fronts` the embeddings route is answered by front processes, not the app."""
    gw: Gateway = make_gateway(node_token=NODE_TOKEN, cluster_secret=SECRET, node_ttl_s=2.0)
    nodes.append(Node(tmp_path / "a", gateway=gw.url, token=NODE_TOKEN, node_id="a", secret=SECRET))
    connected(gw, {"a"})
    body = {
        "model_name": "all-MiniLM-L6-v2",
        "model_uid": "emb",
        "model_type": "embedding",
        "node": "a",
        "engine_options": {"http_fronts": 1},
    }
    gw.api("POST", "/api/nodes/models", json=body)
    wait_for(lambda: ready_nodes(gw, "emb") == {"a"}, "emb ready on a", 180)
    (record,) = [n for n in gw.api("GET", "/api/nodes") if n["node_id"] == "a"]
    base_url = record["workers"][0]["base_url"]

    call = {"model": "emb", "input": ["hello"]}
    r = httpx.post(f"{base_url}/embeddings", json=call)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_worker_key"
    assert r.headers.get("x-modelport-front") is None  # refused before the front's own route
    own = {"Authorization": f"Bearer {worker_key(SECRET, 'a', record['workers'][0]['key_id'])}"}
    r = httpx.post(f"{base_url}/embeddings", json=call, headers=own)
    assert r.status_code == 200 and r.headers["x-modelport-front"] == "0"

    client = gw.openai(gw.create_token(name="user"))
    assert len(client.embeddings.create(model="emb", input="hello").data[0].embedding) == 384
