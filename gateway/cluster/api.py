"""/api/nodes: node heartbeats (node token) and the admin's view of nodes and node launches.

POST /api/nodes/heartbeat          node token + signature (gateway.cluster.heartbeat); body: the
                                   node's record (bounded: 413/400); answer: what it should run
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

import asyncio
import re
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, ValidationError

from gateway.admin_api.envelope import first_error, json_body, ok
from gateway.auth.keys import parse_authorization
from gateway.cluster import desired, launch, secret
from gateway.cluster import heartbeat as signing
from gateway.cluster.nodes import NodeConflict
from gateway.deps import require_admin
from gateway.errors import (
    AuthenticationFailed,
    BodyTooLarge,
    InvalidRequest,
    ModelportError,
    NotFound,
    PermissionDenied,
)
from gateway.services import services_of
from local_runtime.spec import LaunchSpec

router = APIRouter(prefix="/api/nodes", tags=["Cluster API"])
Admin = [Depends(require_admin)]
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")


class WorkerRecord(BaseModel):
    uid: str
    base_url: str
    model: dict[str, Any] | None = None
    gpus: list[int] | None = None
    gpu_memory_bytes: int | None = None
    key_id: str = Field(default="", max_length=64)  # names the worker's key (cluster.secret)
    first_byte_timeout_s: float | None = Field(default=None, gt=0, le=3600)


class NodeRecord(BaseModel):
    node_id: str = Field(pattern=NODE_ID.pattern)
    session: str = Field(default="", max_length=64)  # one node process (a second one is refused)
    address: str = ""  # the host it advertises (Xinference launches name it as worker_ip)
    workers: list[WorkerRecord] = Field(default_factory=list)
    gpus: list[dict[str, Any]] = Field(default_factory=list)
    instances: list[dict[str, Any]] = Field(default_factory=list)  # status for the admin
    version: str = ""


async def _read_bounded(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (before any parsing)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"a heartbeat is at most {limit} bytes (node_heartbeat_max_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"a heartbeat is at most {limit} bytes (node_heartbeat_max_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes, max_workers: int) -> NodeRecord:
    """JSON and validation of a heartbeat (run in a thread: a big one must not stall the loop)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if isinstance(data, dict) and len(data.get("workers") or ()) > max_workers:
        raise InvalidRequest(
            f"workers: a node may list at most {max_workers} workers (node_max_workers)",
            param="workers",
        )
    try:
        return NodeRecord.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(first_error(exc)) from None


@router.post("/heartbeat", summary="A node's heartbeat")
async def heartbeat(request: Request) -> dict[str, Any]:
    state = services_of(request)
    settings = state.settings
    token = parse_authorization(request.headers.get("authorization"))
    if not token:
        raise AuthenticationFailed("a node token is needed: Authorization: Bearer nt-...")
    raw = await _read_bounded(request, settings.node_heartbeat_max_bytes)
    configured = settings.node_token
    async with state.sessions() as session:
        valid, bound = await desired.token_node(
            session, token, configured.get_secret_value() if configured else None
        )
    if not valid:
        raise AuthenticationFailed("invalid node token: issue one with POST /api/nodes/tokens")
    record = await asyncio.to_thread(_parse, raw, settings.node_max_workers)
    if bound is not None and bound != record.node_id:
        raise PermissionDenied(
            f"this node token was issued for node {bound!r}; it cannot heartbeat as "
            f"{record.node_id!r}: issue one per node (POST /api/nodes/tokens {{name: <node id>}})"
        )
    problem = signing.signature_problem(
        secret=secret.configured(settings.cluster_secret),
        token=token,
        node_id=record.node_id,
        body=raw,
        timestamp=request.headers.get(signing.TIMESTAMP_HEADER),
        signature=request.headers.get(signing.SIGNATURE_HEADER),
        signed_with=request.headers.get(signing.SIGNED_WITH_HEADER),
    )
    if problem is not None:
        raise AuthenticationFailed(problem, code="cluster_secret_mismatch")
    if not await state.heartbeat_replays.first_time(
        request.headers.get(signing.SIGNATURE_HEADER, "")
    ):
        raise AuthenticationFailed(
            "this heartbeat was already received (a replay)", code="heartbeat_replayed"
        )
    client = request.client.host if request.client else None
    problem = await signing.address_problem([w.base_url for w in record.workers], client)
    if problem is not None:
        raise InvalidRequest(problem, param="workers")
    try:
        await state.nodes.heartbeat(record.model_dump(mode="json"))
    except NodeConflict as exc:
        raise ModelportError(str(exc), status=409, code="node_id_taken") from None
    async with state.sessions() as session:
        specs = await desired.for_node(session, record.node_id)
    return ok({"desired": [orjson.loads(s) for s in specs], "ttl_s": state.nodes.ttl})


@router.get("", dependencies=Admin, summary="Live nodes, their workers and GPUs")
async def list_nodes(request: Request) -> dict[str, Any]:
    await services_of(request).nodes.sync()
    return ok(services_of(request).nodes.nodes())


@router.post("/tokens", dependencies=Admin, summary="Issue a node token (shown once)")
async def issue_token(request: Request) -> dict[str, Any]:
    body = await json_body(request)
    name = str(body.get("name") or "").strip() if isinstance(body, dict) else ""
    if not NODE_ID.fullmatch(name):
        raise InvalidRequest(
            "name: the node id this token may heartbeat as (--node-id; letters, digits, . _ -)",
            param="name",
        )
    async with services_of(request).sessions() as session:
        token = await desired.issue_token(session, name=name)
    return ok({"name": name, "token": token})


@router.delete("/tokens/{name}", dependencies=Admin, summary="Revoke a node's tokens")
async def revoke_token(name: str, request: Request) -> dict[str, Any]:
    async with services_of(request).sessions() as session:
        n = await desired.revoke_tokens(session, name=name)
    if not n:
        raise NotFound(f"no node token named {name!r}")
    return ok({"revoked": n})


@router.get("/models", dependencies=Admin, summary="Every model placed on a node")
async def placed(request: Request) -> dict[str, Any]:
    async with services_of(request).sessions() as session:
        return ok(await desired.all_placed(session))


@router.post("/models", dependencies=Admin, summary="Run a model on a node")
async def place(request: Request) -> dict[str, Any]:
    try:
        spec = LaunchSpec.model_validate(await json_body(request))
    except ValidationError as exc:
        raise InvalidRequest(first_error(exc)) from None
    spec = await launch.place(services_of(request), spec)
    return ok({"model_uid": spec.uid, "node": spec.node})


@router.delete("/{node}/models/{uid}", dependencies=Admin, summary="Stop a model on a node")
async def unplace(node: str, uid: str, request: Request) -> dict[str, Any]:
    async with services_of(request).sessions() as session:
        if not await desired.unplace(session, node=node, uid=uid):
            raise NotFound(f"{uid!r} is not placed on node {node!r}")
    return ok(None)
