"""Xinference's `POST /v1/models` with `node` (gateway.cluster.launch): driven by the official
xinference-client against a gateway with two real `modelport node` processes, the model runs on
the node named, answers only once that node reports it ready, serves requests (official openai
client) from there, and DELETE withdraws it; a node that is unknown or stopped is a 404 on both
launch APIs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from xinference_client import RESTfulClient

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.scale.procs import Node, connected, ready_nodes, wait_for
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)

MODEL = "smollm2-135m-instruct"
NODE_TOKEN = "node-shared-secret-0123456789"
SECRET = "cluster-secret-for-tests-0123456789abcdef"
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def cluster(make_gateway, tmp_path: Path) -> Iterator[tuple[Gateway, dict[str, Node]]]:
    gw = make_gateway(
        node_token=NODE_TOKEN, cluster_secret=SECRET, node_ttl_s=2.0, runtime_enabled=True
    )
    nodes = {
        n: Node(tmp_path / n, gateway=gw.url, token=NODE_TOKEN, node_id=n, secret=SECRET)
        for n in ("a", "b")
    }
    connected(gw, set(nodes))
    yield gw, nodes
    for node in nodes.values():
        node.stop()


def _channels(gw: Gateway, token: str) -> Counter[str]:
    gw.flush_usage()
    rows = gw.api("GET", "/api/log/", params={"token_name": token, "page_size": 1000})
    return Counter(r["channel_name"] for r in rows if r["status"] == 200)


def test_xinference_launch_with_node_runs_there(cluster, tmp_path: Path):
    gw, _ = cluster
    client = RESTfulClient(gw.url, api_key=ADMIN_TOKEN)
    uid = client.launch_model(model_name=MODEL, model_uid="xchat", model_engine="fake", node="b")
    assert uid == "xchat"
    assert ready_nodes(gw, "xchat") == {"b"}  # the launch answered once b reported it ready
    assert (
        gw.app.state.services.runtime.instances() == []
    )  # nothing was started by the gateway itself
    assert {"uid": "xchat", "node": "b"}.items() <= gw.api("GET", "/api/nodes/models")[0].items()
    # a node keeps no database: the gateway's desired state is what it runs (issue 16)
    assert list((tmp_path / "b").glob("*.db")) == []

    key = gw.create_token(name="x")
    openai_client = gw.openai(key)
    assert "xchat" in [m.id for m in openai_client.models.list().data]
    for _ in range(5):
        reply = openai_client.chat.completions.create(model="xchat", messages=MSG)
        assert reply.choices[0].message.content
    assert _channels(gw, "x") == Counter({"node:b": 5})

    client.terminate_model("xchat")
    assert gw.api("GET", "/api/nodes/models") == []
    wait_for(lambda: not ready_nodes(gw, "xchat"), "xchat stopped on b", 60)
    with pytest.raises(RuntimeError, match="no model is launched under uid 'xchat'"):
        client.terminate_model("xchat")


def test_a_node_that_is_not_connected_is_a_404(cluster):
    gw, nodes = cluster
    body = {"model_name": MODEL, "model_uid": "m", "model_engine": "fake", "node": "nowhere"}
    auth = {"Authorization": ADMIN_TOKEN}
    r = httpx.post(f"{gw.url}/v1/models", json=body, headers=auth)
    assert r.status_code == 404
    assert r.json() == {
        "detail": "node 'nowhere' is not connected (no heartbeat in the last 2 s); "
        "connected nodes: a, b"
    }
    r = httpx.post(f"{gw.url}/api/nodes/models", json=body, headers=auth)
    assert r.status_code == 404 and r.json()["success"] is False
    assert "node 'nowhere' is not connected" in r.json()["message"]

    nodes["a"].stop()
    wait_for(lambda: connected_now(gw) == {"b"}, "node a gone", 30)
    with pytest.raises(RuntimeError, match="node 'a' is not connected"):
        RESTfulClient(gw.url, api_key=ADMIN_TOKEN).launch_model(
            model_name=MODEL, model_uid="m", model_engine="fake", node="a"
        )
    assert gw.api("GET", "/api/nodes/models") == []
    assert gw.app.state.services.runtime.instances() == []


def test_a_failed_launch_on_a_node_says_why_and_leaves_nothing_placed(cluster):
    gw, _ = cluster
    client = RESTfulClient(gw.url, api_key=ADMIN_TOKEN)
    with pytest.raises(RuntimeError, match=r"failed to start on node 'a'.*weights are broken"):
        client.launch_model(
            model_name=MODEL,
            model_uid="bad",
            model_engine="fake",
            node="a",
            engine_options={"fail_load": "weights are broken"},
        )
    assert gw.api("GET", "/api/nodes/models") == []
    wait_for(
        lambda: (
            not [
                i for n in gw.api("GET", "/api/nodes") for i in n["instances"] if i["uid"] == "bad"
            ]
        ),
        "the failed instance withdrawn from node a",
        60,
    )


def connected_now(gw: Gateway) -> set[str]:
    return {n["node_id"] for n in gw.api("GET", "/api/nodes") if not n.get("host_scope")}


def test_worker_ip_picks_the_node_advertising_that_host(cluster):
    """Xinference clients place a model with `worker_ip`; both test nodes advertise 127.0.0.1,
    so the launch lands on one of them, and an address no node has is a 404 naming the nodes."""
    gw, _ = cluster
    client = RESTfulClient(gw.url, api_key=ADMIN_TOKEN)
    uid = client.launch_model(
        model_name=MODEL, model_uid="ipchat", model_engine="fake", worker_ip="127.0.0.1"
    )
    assert uid == "ipchat"
    placed = gw.api("GET", "/api/nodes/models")
    assert [(p["uid"], p["node"] in {"a", "b"}) for p in placed] == [("ipchat", True)]
    assert ready_nodes(gw, "ipchat") == {placed[0]["node"]}
    assert gw.app.state.services.runtime.instances() == []

    body = {"model_name": MODEL, "model_uid": "m2", "model_engine": "fake", "worker_ip": "10.9.9.9"}
    r = httpx.post(f"{gw.url}/v1/models", json=body, headers={"Authorization": ADMIN_TOKEN})
    assert r.status_code == 404
    assert "no connected node is at worker_ip '10.9.9.9'" in r.json()["detail"]
    assert "a (127.0.0.1)" in r.json()["detail"]
    client.terminate_model("ipchat")


def test_a_gateway_without_runtime_launches_on_the_roomiest_node(make_gateway, tmp_path: Path):
    """The Kubernetes layout: gateways run no model; Xinference's launch, with no node named,
    lands on a connected node, serves from there and is terminated there."""
    gw = make_gateway(node_token=NODE_TOKEN, cluster_secret=SECRET, node_ttl_s=2.0)
    assert gw.app.state.services.runtime is None
    node = Node(tmp_path / "a", gateway=gw.url, token=NODE_TOKEN, node_id="a", secret=SECRET)
    try:
        connected(gw, {"a"})
        client = RESTfulClient(gw.url, api_key=ADMIN_TOKEN)
        assert client.launch_model(model_name=MODEL, model_uid="k", model_engine="fake") == "k"
        assert ready_nodes(gw, "k") == {"a"}
        key = gw.create_token(name="k")
        reply = gw.openai(key).chat.completions.create(model="k", messages=MSG)
        assert reply.choices[0].message.content
        client.terminate_model("k")
        assert gw.api("GET", "/api/nodes/models") == []
        wait_for(lambda: not ready_nodes(gw, "k"), "k stopped on a", 60)
    finally:
        node.stop()
