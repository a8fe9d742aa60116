"""The node registry: which workers run where, as every gateway process sees it.

A node (`modelport node` on a GPU machine, or the one runtime-owning process of a host running
`uvicorn --workers N`) heartbeats a record: its id, its workers (UID, base URL reachable from the
gateway, model metadata), its GPUs. The record is a database row with an expiry
(gateway.cluster.changes.DatabaseNodeStore), so a node that stops heartbeating vanishes by itself
after `ttl` seconds: nothing has to notice it died. Records live in the database, not Redis: a
replica that loses Redis still stores the heartbeats it receives, so one replica's trouble never
evicts a healthy node from the others (a few writes a second per node is nothing to PostgreSQL). Every process syncs the store every `interval` seconds (and at once
on a "nodes" bus message) and turns the records into `Endpoint`s of the route table.

Requests to a worker carry that worker launch's own key, derived here from the `key_id` its
record lists (gateway.cluster.secret): under the cluster secret for a GPU node's workers, under
the host's root for the host's own loopback workers. No key is ever stored in a record.

A node id belongs to one process at a time: a heartbeat whose `session` differs from the live
record's is refused (NodeConflict) until that record expires, so a second process claiming a live
node's id cannot take over its routing. Applying a heartbeat costs what changed: an unchanged
worker list only refreshes the TTL, and `sync` skips rebuilding when no node's workers changed.

Local supervisor endpoints and node endpoints for the same UID are merged: the registry is built
on the route table's `set_local`, and the supervisor's replicas go through the registry's
(gateway.cluster.integration), so both reach the table through `_push`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from sqlalchemy.exc import SQLAlchemyError

from gateway.cluster.secret import worker_key
from gateway.model_info import ServedModel
from gateway.upstreams.base import Endpoint, Timeouts

log = logging.getLogger("modelport.cluster")


class NodeConflict(ValueError):
    """Another live process holds this node id."""


class NodeStore(Protocol):
    async def put(self, record: dict[str, Any], ttl: float) -> None: ...

    async def get(self, node_id: str) -> dict[str, Any] | None: ...

    async def all(self) -> list[dict[str, Any]]: ...

    async def remove(self, node_id: str) -> None: ...

    async def aclose(self) -> None: ...


SetLocal = Callable[[str, list[Endpoint]], None]


class NodeRegistry:
    def __init__(
        self,
        *,
        store: NodeStore,
        set_local: SetLocal,
        channel_id: Callable[[], int],
        ttl: float = 3.0,
        interval: float = 0.5,
        host_scope: str = "",
        on_change: Callable[[], Awaitable[None]] | None = None,
        secret: str | None = None,
        local_root: str | None = None,
        first_byte_timeout_s: float = 30.0,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.interval = interval
        self.host_scope = host_scope  # host-local records are used only by the same host
        self.own_node: str | None = None  # our own record: the supervisor already routes to it
        self._set_local = set_local
        self._channel_id = channel_id
        self._on_change = on_change
        self._secret = secret  # the root of GPU nodes' worker keys
        self._local_root = local_root  # the root of this host's own workers' keys
        self._first_byte = first_byte_timeout_s  # for workers whose record names none
        self._applied: dict[str, bytes] = {}  # node id -> workers digest of the last rebuild
        self._local: dict[str, list[Endpoint]] = {}
        self._nodes: dict[str, list[Endpoint]] = {}
        self._endpoints: dict[tuple[str, str, str], Endpoint] = {}
        self._models: dict[str, ServedModel] = {}
        self._records: list[dict[str, Any]] = []
        self._digests: dict[str, bytes] = {}
        self._sessions: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    # --- what the supervisor does ---------------------------------------------------------
    def set_local(self, uid: str, endpoints: list[Endpoint]) -> None:
        """The route table's set_local, wrapped: the supervisor's replicas plus nodes' workers."""
        if endpoints:
            self._local[uid] = list(endpoints)
        else:
            self._local.pop(uid, None)
        self._push(uid)

    def skip_own(self, node_id: str) -> None:
        """This process runs the host's runtime, whose workers it heartbeats as `node_id`: that
        record is not routed again (the supervisor's `set_local` already routes them)."""
        self.own_node = node_id

    def _push(self, uid: str) -> None:
        self._set_local(uid, self._local.get(uid, []) + self._nodes.get(uid, []))

    # --- heartbeats ------------------------------------------------------------------------
    async def heartbeat(self, record: dict[str, Any]) -> bool:
        """Store a node's record; True when its workers changed (then every process is told)."""
        node_id = record["node_id"]
        if node_id not in self._digests or record.get("session") != self._sessions.get(node_id):
            live = await self.store.get(node_id)
            if live is not None and live.get("session", "") != record.get("session", ""):
                raise NodeConflict(
                    f"node id {node_id!r} is live in another process (its heartbeats continue); "
                    "give this node its own --node-id, or stop the other one"
                )
            self._sessions[node_id] = record.get("session", "")
        record = {**record, "seen": time.time()}
        await self.store.put(record, self.ttl)
        digest = orjson.dumps(record.get("workers", []), option=orjson.OPT_SORT_KEYS)
        changed = self._digests.get(record["node_id"]) != digest
        self._digests[record["node_id"]] = digest
        if changed:
            await self.sync()
            if self._on_change is not None:
                await self._on_change()
        return changed

    async def remove(self, node_id: str) -> None:
        await self.store.remove(node_id)
        self._digests.pop(node_id, None)
        self._sessions.pop(node_id, None)
        await self.sync()
        if self._on_change is not None:
            await self._on_change()

    # --- reads -----------------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        return list(self._records)

    def served_models(self) -> dict[str, ServedModel]:
        return dict(self._models)

    def node_ids(self) -> set[str]:
        return {r["node_id"] for r in self._records}

    # --- sync ------------------------------------------------------------------------------
    async def sync(self) -> None:
        """Rebuild node endpoints from the store; push only the UIDs whose endpoints changed."""
        records = await self.store.all()
        self._records = sorted(records, key=lambda r: r["node_id"])
        applied = {
            r["node_id"]: orjson.dumps(r.get("workers", []), option=orjson.OPT_SORT_KEYS)
            for r in self._records
        }
        if applied == self._applied:
            return  # nobody's workers changed: nothing to rebuild
        self._applied = applied
        by_uid: dict[str, list[Endpoint]] = {}
        models: dict[str, ServedModel] = {}
        keep: dict[tuple[str, str, str], Endpoint] = {}
        for rec in self._records:
            if rec["node_id"] == self.own_node:
                continue
            scope = rec.get("host_scope") or ""
            if scope and scope != self.host_scope:
                continue  # a loopback worker of another host: unreachable from here
            for w in rec.get("workers", []):
                key = (rec["node_id"], w["base_url"], w.get("key_id", ""))
                ep = self._endpoints.get(key) or self._endpoint(rec["node_id"], w, scope)
                keep[key] = ep
                by_uid.setdefault(w["uid"], []).append(ep)
                if w.get("model") and w["uid"] not in models:
                    with contextlib.suppress(ValueError):
                        models[w["uid"]] = ServedModel.model_validate(w["model"])
        self._endpoints = keep
        self._models = models
        changed = {
            uid
            for uid in set(by_uid) | set(self._nodes)
            if [id(e) for e in by_uid.get(uid, [])] != [id(e) for e in self._nodes.get(uid, [])]
        }
        self._nodes = by_uid
        for uid in changed:
            self._push(uid)

    def _endpoint(self, node_id: str, worker: dict[str, Any], scope: str) -> Endpoint:
        return Endpoint(
            channel_id=self._channel_id(),
            channel_name=f"node:{node_id}",
            kind="local",
            base_url=worker["base_url"],
            api_key=self._key(node_id, worker.get("key_id") or "", scope),
            weight=int(worker.get("weight", 1)),
            config={"stream_usage": True},
            timeouts=Timeouts(
                first_byte=float(worker.get("first_byte_timeout_s") or self._first_byte)
            ),
        )

    def _key(self, node_id: str, key_id: str, scope: str) -> str | None:
        """The worker's own key: a host's workers are keyed under the host's root and the
        supervisor's label "" (`serve`), a GPU node's under the cluster secret and its id."""
        root, label = (self._local_root, "") if scope else (self._secret, node_id)
        return worker_key(root, label, key_id) if root and key_id else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-registry")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except (SQLAlchemyError, OSError, ValueError) as exc:  # keep the last known nodes
                log.warning("node registry sync failed: %s", exc)
            await asyncio.sleep(self.interval)
