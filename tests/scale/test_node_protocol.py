"""The node protocol against a hostile network (issue 20): heartbeats are signed over their time
and body and cannot be replayed, not even to another replica; worker addresses must be the
sender's own host at the worker path; an issued token serves one node id; a second process cannot
take a live node's id; gateways send each node worker its own derived key, never the cluster
secret; the node token is not on the node's command line."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import orjson

from gateway.cluster import heartbeat
from gateway.cluster.secret import worker_key
from tests.conftest import REDIS_URL, Gateway
from tests.scale.procs import MODELPORT, Node, beat, connected, wait_for

NODE_TOKEN = "node-shared-secret-0123456789"
SECRET = "cluster-secret-for-tests-0123456789abcdef"
MSG = [{"role": "user", "content": "hello there"}]


def _ids(gw: Gateway) -> set[str]:
    return {n["node_id"] for n in gw.api("GET", "/api/nodes")}


def test_a_heartbeat_is_signed_and_cannot_be_replayed(pg_url: str, make_gateway, tmp_path: Path):
    """Two replicas on one PostgreSQL and Redis: a heartbeat accepted by one is refused by both
    when replayed; stale, altered and unsigned heartbeats are refused."""
    prefix = f"mp-hb-{time.time_ns()}"
    common = {"node_token": NODE_TOKEN, "cluster_secret": SECRET, "redis_url": REDIS_URL,
              "database_url": pg_url}  # fmt: skip
    a = make_gateway(redis_prefix=prefix, **common)
    b = make_gateway(redis_prefix=prefix, **common)
    body = orjson.dumps({"node_id": "gpu-a", "session": "s1"})
    signed = heartbeat.headers(SECRET, body, with_secret=True)
    auth = {"Authorization": f"Bearer {NODE_TOKEN}", **signed}

    first = httpx.post(f"{a.url}{heartbeat.PATH}", content=body, headers=auth)
    assert first.status_code == 200, first.text
    for gw in (a, b):  # the same bytes again, to the same replica or another one
        again = httpx.post(f"{gw.url}{heartbeat.PATH}", content=body, headers=auth)
        assert again.status_code == 401 and "a replay" in again.json()["message"]

    stale = beat(a.url, NODE_TOKEN, {"node_id": "gpu-a", "session": "s1"}, secret=SECRET,
                 now=time.time() - 120)  # fmt: skip
    assert stale.status_code == 401 and "clock" in stale.json()["message"]

    altered = orjson.dumps({"node_id": "gpu-a", "session": "s1", "address": "10.0.0.9"})
    r = httpx.post(f"{a.url}{heartbeat.PATH}", content=altered, headers=auth)
    assert r.status_code == 401 and "altered" in r.json()["message"]

    unsigned = httpx.post(
        f"{a.url}{heartbeat.PATH}", content=body, headers={"Authorization": f"Bearer {NODE_TOKEN}"}
    )
    assert unsigned.status_code == 401

    assert beat(b.url, NODE_TOKEN, {"node_id": "gpu-a", "session": "s1"}, secret=SECRET).is_success


def test_worker_addresses_must_be_the_senders_host_and_the_worker_path(make_gateway):
    gw = make_gateway(node_token=NODE_TOKEN)
    for url in (
        "http://10.20.30.40:8000/v1",  # another machine: would carry users' prompts there
        "http://127.0.0.1:8000/api/nodes",  # not a worker path
        "http://user:pw@127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1?x=1",
        "ftp://127.0.0.1:8000/v1",
    ):
        record = {"node_id": "n1", "workers": [{"uid": "m", "base_url": url}]}
        r = beat(gw.url, NODE_TOKEN, record)
        assert r.status_code == 400, (url, r.text)
        assert "worker address" in r.json()["message"]
    assert "n1" not in _ids(gw)
    good = {"node_id": "n1", "workers": [{"uid": "m", "base_url": "http://localhost:8000/v1"}]}
    assert beat(gw.url, NODE_TOKEN, good).status_code == 200
    assert "n1" in _ids(gw)


def test_an_issued_token_heartbeats_only_as_its_node(make_gateway):
    gw = make_gateway()
    z = gw.api("POST", "/api/nodes/tokens", json={"name": "gpu-z"})["token"]
    r = beat(gw.url, z, {"node_id": "gpu-b"})
    assert r.status_code == 403 and "issued for node 'gpu-z'" in r.json()["message"]
    assert beat(gw.url, z, {"node_id": "gpu-z"}).status_code == 200
    assert _ids(gw) == {"gpu-z"}
    r = gw.admin.post("/api/nodes/tokens", json={"name": "no spaces allowed"})
    assert r.status_code == 400


def test_a_second_process_cannot_claim_a_live_node_id(make_gateway):
    gw = make_gateway(node_token=NODE_TOKEN, node_ttl_s=1.0)
    live = {"node_id": "gpu-a", "session": "first"}
    assert beat(gw.url, NODE_TOKEN, live).status_code == 200
    r = beat(gw.url, NODE_TOKEN, {"node_id": "gpu-a", "session": "second"})
    assert r.status_code == 409 and "is live in another process" in r.json()["message"]
    assert beat(gw.url, NODE_TOKEN, live).status_code == 200  # the live one goes on
    # once the first stops heartbeating (its record expires), the id is free again
    wait_for(
        lambda: beat(gw.url, NODE_TOKEN, {"node_id": "gpu-a", "session": "second"}).is_success,
        "the id free after the first node's TTL",
        30,
    )


def test_gateways_send_node_workers_a_derived_key_never_the_secret(make_gateway, fake_upstream):
    """The 'worker' is a recording server on 127.0.0.1: what a captured request would reveal."""
    gw = make_gateway(node_token=NODE_TOKEN, cluster_secret=SECRET)
    worker = {"uid": "m", "base_url": f"{fake_upstream.url}/v1", "key_id": "k1"}
    assert beat(gw.url, NODE_TOKEN, {"node_id": "gpu-a", "workers": [worker]}, secret=SECRET)
    client = gw.openai(gw.create_token(name="user"))
    wait_for(
        lambda: client.chat.completions.create(model="m", messages=MSG).choices,
        "relayed to the node worker",
        30,
    )
    (sent,) = [r for r in fake_upstream.requests if r.path == "/v1/chat/completions"][:1]
    assert sent.headers["authorization"] == f"Bearer {worker_key(SECRET, 'gpu-a', 'k1')}"
    assert SECRET not in orjson.dumps(sent.headers).decode()


def test_the_node_token_is_not_on_the_command_line(make_gateway, tmp_path: Path):
    gw = make_gateway(node_token=NODE_TOKEN)
    node = Node(tmp_path / "n", gateway=gw.url, token=NODE_TOKEN, node_id="envnode")
    try:
        connected(gw, {"envnode"})
        argv = Path(f"/proc/{node.proc.pid}/cmdline").read_bytes()
        assert NODE_TOKEN.encode() not in argv
    finally:
        node.stop()


def test_the_node_token_can_come_from_a_file(make_gateway, tmp_path: Path):
    gw = make_gateway(node_token=NODE_TOKEN)
    token_file = tmp_path / "token"
    token_file.write_text(NODE_TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if k != "MODELPORT_NODE_TOKEN"}
    log = (tmp_path / "node.log").open("wb")
    proc = subprocess.Popen(
        [MODELPORT, "node", "--gateway", gw.url, "--node-token-file", str(token_file),
         "--node-id", "filenode", "--advertise-host", "127.0.0.1", "--bind-host", "127.0.0.1",
         "--home", str(tmp_path / "home")],
        env={**env, "MODELPORT_LOG_FORMAT": "text"}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        connected(gw, {"filenode"})
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_only_the_admin_issues_node_tokens(make_gateway):
    """No credentials, a user's sk- key or a node token cannot mint a node token (which would
    let its holder put workers into routing)."""
    gw = make_gateway(node_token=NODE_TOKEN)
    user_key = gw.create_token(name="user")
    for auth in (None, f"Bearer {user_key}", f"Bearer {NODE_TOKEN}"):
        headers = {"Authorization": auth} if auth else {}
        r = httpx.post(f"{gw.url}/api/nodes/tokens", json={"name": "evil"}, headers=headers)
        assert r.status_code in (401, 403), (auth, r.status_code, r.text)
        assert r.json()["data"] is None
    assert gw.admin.delete("/api/nodes/tokens/evil").status_code == 404  # none was issued


def test_a_heartbeat_without_a_valid_signature_is_refused_without_a_cluster_secret(make_gateway):
    """Without a cluster secret a heartbeat is signed with the node token: an unsigned one, or
    one signed with another key, is refused and the node does not join."""
    gw = make_gateway(node_token=NODE_TOKEN)
    body = orjson.dumps({"node_id": "gpu-x"})
    auth = {"Authorization": f"Bearer {NODE_TOKEN}"}
    unsigned = httpx.post(f"{gw.url}{heartbeat.PATH}", content=body, headers=auth)
    assert unsigned.status_code == 401 and "not signed" in unsigned.json()["message"]
    forged = heartbeat.headers("not-the-token", body, with_secret=False)
    r = httpx.post(f"{gw.url}{heartbeat.PATH}", content=body, headers={**auth, **forged})
    assert r.status_code == 401
    assert "gpu-x" not in _ids(gw)
