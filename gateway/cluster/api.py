"""/api/nodes: node heartbeats (node token) and the admin's view of nodes and node launches.

POST /api/nodes/heartbeat          node token (+ proof of the cluster secret, gateway.cluster.secret);
                                   body: the node's record; answer: what it should run
GET  /api/nodes                    admin; live nodes with their workers and GPUs
POST /api/nodes/tokens             admin; {name} -> a new node token (shown once)
DELETE /api/nodes/tokens/{name}    admin; revoke a node's tokens
GET  /api/nodes/models             admin; every node placement (uid, node)
POST /api/nodes/models             admin; a LaunchSpec with `node` (or none: the node with the most
                                   free GPU memory) -> placed; the node starts it within a second;
                                   404 for a node that is not connected (gateway.cluster.launch)
DELETE /api/nodes/{node}/models/{uid}  admin; the node stops it at its next heartbeat
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, ValidationError

from gateway.admin_api.envelope import first_error, json_body, ok
from gateway.auth.keys import parse_authorization
from gateway.cluster import desired, launch, secret
from gateway.deps import require_admin
from gateway.errors import AuthenticationFailed, InvalidRequest, NotFound
from local_runtime.spec import LaunchSpec

router = APIRouter(prefix="/api/nodes", tags=["Cluster API"])
Admin = [Depends(require_admin)]


class WorkerRecord(BaseModel):
    uid: str
    base_url: str
    model: dict[str, Any] | None = None
    gpus: list[int] | None = None
    gpu_memory_bytes: int | None = None


class NodeRecord(BaseModel):
    node_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")
    address: str = ""  # the host it advertises (Xinference launches name it as worker_ip)
    workers: list[WorkerRecord] = Field(default_factory=list)
    gpus: list[dict[str, Any]] = Field(default_factory=list)
    instances: list[dict[str, Any]] = Field(default_factory=list)  # status for the admin
    version: str = ""


async def _node_auth(request: Request) -> None:
    token = parse_authorization(request.headers.get("authorization"))
    if not token:
        raise AuthenticationFailed("a node token is needed: Authorization: Bearer nt-...")
    configured = request.app.state.settings.node_token
    async with request.app.state.sessions() as session:
        if not await desired.token_valid(
            session, token, configured.get_secret_value() if configured else None
        ):
            raise AuthenticationFailed("invalid node token: issue one with POST /api/nodes/tokens")


@router.post("/heartbeat", dependencies=[Depends(_node_auth)], summary="A node's heartbeat")
async def heartbeat(request: Request) -> dict[str, Any]:
    try:
        record = NodeRecord.model_validate(await json_body(request))
    except ValidationError as exc:
        raise InvalidRequest(first_error(exc)) from None
    problem = secret.proof_problem(
        secret.configured(request.app.state.settings.cluster_secret),
        record.node_id,
        request.headers.get(secret.PROOF_HEADER),
    )
    if problem is not None:
        raise AuthenticationFailed(problem, code="cluster_secret_mismatch")
    await request.app.state.nodes.heartbeat(record.model_dump(mode="json"))
    async with request.app.state.sessions() as session:
        specs = await desired.for_node(session, record.node_id)
    return ok({"desired": [orjson.loads(s) for s in specs], "ttl_s": request.app.state.nodes.ttl})


@router.get("", dependencies=Admin, summary="Live nodes, their workers and GPUs")
async def list_nodes(request: Request) -> dict[str, Any]:
    await request.app.state.nodes.sync()
    return ok(request.app.state.nodes.nodes())


@router.post("/tokens", dependencies=Admin, summary="Issue a node token (shown once)")
async def issue_token(request: Request) -> dict[str, Any]:
    body = await json_body(request)
    name = str(body.get("name") or "").strip() if isinstance(body, dict) else ""
    if not name:
        raise InvalidRequest("name: give the token a name (e.g. the node's host name)")
    async with request.app.state.sessions() as session:
        token = await desired.issue_token(session, name=name[:64])
    return ok({"name": name[:64], "token": token})


@router.delete("/tokens/{name}", dependencies=Admin, summary="Revoke a node's tokens")
async def revoke_token(name: str, request: Request) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        n = await desired.revoke_tokens(session, name=name)
    if not n:
        raise NotFound(f"no node token named {name!r}")
    return ok({"revoked": n})


@router.get("/models", dependencies=Admin, summary="Every model placed on a node")
async def placed(request: Request) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        return ok(await desired.all_placed(session))


@router.post("/models", dependencies=Admin, summary="Run a model on a node")
async def place(request: Request) -> dict[str, Any]:
    try:
        spec = LaunchSpec.model_validate(await json_body(request))
    except ValidationError as exc:
        raise InvalidRequest(first_error(exc)) from None
    spec = await launch.place(request.app.state, spec)
    return ok({"model_uid": spec.uid, "node": spec.node})


@router.delete("/{node}/models/{uid}", dependencies=Admin, summary="Stop a model on a node")
async def unplace(node: str, uid: str, request: Request) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        if not await desired.unplace(session, node=node, uid=uid):
            raise NotFound(f"{uid!r} is not placed on node {node!r}")
    return ok(None)
