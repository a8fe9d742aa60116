"""Launching on a GPU node: the one code path behind both launch APIs.

`POST /api/nodes/models` (admin, One API envelope) and Xinference's `POST /v1/models` with a
`node` field both come here, so a launch aimed at a node is checked and stored the same way
whichever client sent it: the node must be connected (heartbeating, and not a host's own runtime
process), and the spec becomes that node's desired state, which it starts at its next heartbeat.

Xinference's launch answers only when the model is ready, or with the reason it failed;
`wait_ready` gives node launches the same contract by watching the node's heartbeat record, and
withdraws a launch that failed so that nothing stays placed (as a failed local launch leaves
nothing running).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.cluster import desired
from gateway.errors import InvalidRequest, NotFound, Unavailable
from local_runtime.spec import LaunchSpec

POLL_S = 0.2


def gpu_nodes(state: Any) -> dict[str, dict[str, Any]]:
    """Connected GPU nodes by id (host-local runtime records are not launch targets)."""
    return {r["node_id"]: r for r in state.nodes.nodes() if not r.get("host_scope")}


def pick_node(records: list[dict[str, Any]]) -> str | None:
    """The node with the most free GPU memory (then the fewest workers)."""
    if not records:
        return None

    def room(r: dict[str, Any]) -> tuple[int, int]:
        free = sum(int(g.get("free_bytes") or 0) for g in r.get("gpus", []))
        return free, -len(r.get("workers", []))

    return str(max(records, key=room)["node_id"])


async def node_at(state: Any, address: str) -> str:
    """The node serving at `address` (Xinference's `worker_ip`: a node's advertised host, or its
    id); the roomiest when several nodes share one host."""
    await state.nodes.sync()
    nodes = gpu_nodes(state)
    here = [r for r in nodes.values() if address in (r.get("address"), r["node_id"])]
    node = pick_node(here)
    if node is None:
        known = sorted(f"{r['node_id']} ({r.get('address', '?')})" for r in nodes.values())
        raise NotFound(
            f"no connected node is at worker_ip {address!r}; connected nodes: "
            f"{', '.join(known) or 'none'} (or name one with `node`)",
            code="node_not_found",
            param="worker_ip",
        )
    return node


async def place(state: Any, spec: LaunchSpec) -> LaunchSpec:
    """Store `spec` as desired state of its node (or of the roomiest one); the placed spec."""
    await state.nodes.sync()  # a fresh view: the node may have heartbeated to another replica
    nodes = gpu_nodes(state)
    if spec.node is None:
        node = pick_node(list(nodes.values()))
        if node is None:
            raise InvalidRequest(
                "no node is connected: start `modelport node` on a GPU machine", code="no_node"
            )
        spec = spec.model_copy(update={"node": node})
    elif spec.node not in nodes:
        raise NotFound(
            f"node {spec.node!r} is not connected (no heartbeat in the last "
            f"{state.nodes.ttl:g} s); connected nodes: {', '.join(sorted(nodes)) or 'none'}",
            code="node_not_found",
            param="node",
        )
    node = str(spec.node)
    async with state.sessions() as session:
        await desired.place(session, node=node, uid=spec.uid, spec_json=spec.model_dump_json())
    return spec


async def wait_ready(state: Any, spec: LaunchSpec, *, placed_at: float, limit_s: float) -> None:
    """Return once `spec.node` reports a ready worker for the UID; else withdraw and raise.

    Only records the node sent after it received the spec count: the first heartbeat stored
    after `placed_at` (wall clock) is the one whose answer delivered it, so the state it shows
    may still be the old one (a worker of a replaced spec, the error of an earlier attempt).
    """
    node, uid = str(spec.node), spec.uid
    deadline = time.monotonic() + limit_s
    delivered: float | None = None
    while True:
        await state.nodes.sync()
        record = gpu_nodes(state).get(node)
        seen = float(record.get("seen") or 0.0) if record is not None else 0.0
        if delivered is None and seen > placed_at:
            delivered = seen
        current = delivered is not None and seen > delivered
        if record is None:
            problem: Exception = Unavailable(
                f"node {node!r} stopped heartbeating while {uid!r} was starting",
                code="node_gone",
            )
        elif current and any(w["uid"] == uid for w in record.get("workers", [])):
            return
        elif current and (error := _error(record, uid)):
            problem = InvalidRequest(
                f"{uid!r} failed to start on node {node!r}: {error}", code="launch_failed"
            )
        elif time.monotonic() > deadline:
            problem = Unavailable(
                f"{uid!r} was not ready on node {node!r} after {limit_s:g}s", code="launch_timeout"
            )
        else:
            await asyncio.sleep(POLL_S)
            continue
        async with state.sessions() as session:
            await desired.unplace(session, node=node, uid=uid)
        raise problem


def _error(record: dict[str, Any], uid: str) -> str | None:
    for inst in record.get("instances", []):
        if inst.get("uid") == uid and inst.get("status") == "error":
            return str(inst.get("error") or "the model failed to load")
    return None


async def unplace_everywhere(state: Any, uid: str) -> list[str]:
    """Withdraw `uid` from every GPU node it is placed on; the nodes it was on."""
    hosts = {r["node_id"] for r in state.nodes.nodes() if r.get("host_scope")}
    async with state.sessions() as session:
        nodes = [
            p["node"]
            for p in await desired.all_placed(session)
            if p["uid"] == uid and p["node"] not in hosts
        ]
        for node in nodes:
            await desired.unplace(session, node=node, uid=uid)
    return nodes
