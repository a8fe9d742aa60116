"""`modelport node`: a runtime Supervisor on a GPU machine, driven by the gateway.

The node polls: every `interval` seconds it POSTs its record (workers with URLs the gateway can
reach, model metadata, GPUs) to `<gateway>/api/nodes/heartbeat` with its node token, and the
answer lists the LaunchSpecs placed on it. It converges on that list: launches what is missing,
stops what was removed or changed. Polling rather than serving a command API means the node needs
no inbound port besides its workers', any gateway replica behind a load balancer can answer, and
a gateway restart loses nothing (desired state lives in the gateway's database).

Workers listen on `--bind-host`, reachable by whoever reaches that address, so with
`cluster_secret` (MODELPORT_CLUSTER_SECRET, the gateways' value) each worker launch answers only
callers that send its own key, derived from the secret (gateway.cluster.secret), and every
heartbeat is signed with the secret over its time and body (gateway.cluster.heartbeat); without a
secret the node refuses to bind beyond loopback. The node token comes from the environment or a
file (`modelport node` reads MODELPORT_NODE_TOKEN or --node-token-file), never the command line,
which `ps` shows to every user of the machine. A random `session` in each heartbeat lets the
gateway refuse a second process that claims a live node's id.

If the gateway is unreachable, workers keep serving and the node keeps trying; the gateway drops
the node from routing after `node_ttl_s` without heartbeats. The node has no database: what it
runs is the gateway's desired state, which it converges on again after a restart, so its
supervisor keeps launches in memory and routes nothing itself (the gateway routes to the workers
its heartbeats list). It lives in the composition layer because it speaks the gateway's
heartbeat protocol and reads the gateway's settings type (cluster secret, node token, logging, catalog):
a node is configured by the same file and MODELPORT_* variables as the gateways it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from gateway.cluster import heartbeat
from gateway.cluster import secret as cluster_secret
from gateway.logging import configure_logging
from gateway.runtime_host.adapters import ready_workers, runtime_settings
from gateway.settings import Settings
from local_runtime.catalog import Catalog
from local_runtime.resolve import LaunchError
from local_runtime.spec import LaunchSpec
from local_runtime.supervisor import (
    MemoryLaunchStore,
    Supervisor,
    SupervisorOptions,
    UnknownInstance,
)
from local_runtime.supervisor.packing import query_gpus

log = logging.getLogger("modelport.node")


class NodeAgent:
    def __init__(
        self,
        *,
        gateway: str,
        token: str,
        home: Path,
        node_id: str | None = None,
        advertise_host: str | None = None,
        bind_host: str = "0.0.0.0",
        interval: float = 1.0,
        options: SupervisorOptions | None = None,
    ) -> None:
        self.gateway = gateway.rstrip("/")
        self.token = token
        self.node_id = node_id or socket.gethostname()
        self.advertise_host = advertise_host or socket.gethostname()
        self.interval = interval
        home.mkdir(parents=True, exist_ok=True)
        self.settings = Settings(
            home=home,
            runtime_enabled=True,
        )
        # never a command-line flag: other users of the machine can read a process's argv
        self.secret = cluster_secret.configured(self.settings.cluster_secret)
        self.options = options or SupervisorOptions()
        self.options.worker_host = bind_host
        self.options.worker_key_root = self.secret
        self.options.worker_keys = self.secret is not None
        self.session = secrets.token_hex(8)
        self._specs: dict[str, str] = {}  # uid -> LaunchSpec JSON we launched it with
        self._gpus: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self.supervisor: Supervisor | None = None

    async def run(self, stop: asyncio.Event) -> None:
        catalog = Catalog.load(
            builtin_dir=self.settings.catalog_dir, custom_dir=self.settings.home / "custom_models"
        )
        sup = Supervisor(
            settings=runtime_settings(self.settings),
            catalog=catalog,
            store=MemoryLaunchStore(),
            options=self.options,
            node=self.node_id,
        )
        self.supervisor = sup
        await sup.start()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        log.info("node %s heartbeating to %s", self.node_id, self.gateway)
        try:
            async with httpx.AsyncClient(timeout=10, headers=headers, trust_env=False) as http:
                while not stop.is_set():
                    if not await self._beat(http, sup):
                        # once more on a new connection: behind a load balancer it may reach a
                        # healthy replica, before this node's record expires everywhere
                        async with httpx.AsyncClient(
                            timeout=10, headers=headers, trust_env=False
                        ) as fresh:
                            await self._beat(fresh, sup)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await sup.close()

    async def _beat(self, http: httpx.AsyncClient, sup: Supervisor) -> bool:
        """One signed heartbeat (signed anew each time: a resent one would be a replay); False
        when it did not reach a gateway that could store it (a refusal is not retried)."""
        body_bytes = orjson.dumps(self.record(sup))
        signed = heartbeat.headers(
            self.secret or self.token, body_bytes, with_secret=self.secret is not None
        )
        try:
            resp = await http.post(
                f"{self.gateway}{heartbeat.PATH}", content=body_bytes, headers=signed
            )
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("heartbeat to %s failed: %s", self.gateway, exc)
            return False
        if not body.get("success"):
            log.error("gateway refused the heartbeat: %s", body.get("message"))
            return resp.status_code < 500
        await self.converge(sup, body["data"].get("desired", []))
        return True

    def record(self, sup: Supervisor) -> dict[str, Any]:
        instances = sup.instances()
        return {
            "node_id": self.node_id,
            "session": self.session,
            "address": self.advertise_host,  # what Xinference clients name as worker_ip
            "workers": ready_workers(sup, instances, self.advertise_host),
            "instances": [
                {k: inst.get(k) for k in ("uid", "status", "error", "model_name")}
                for inst in instances
            ],
            "gpus": self._gpu_info(),
        }

    def _gpu_info(self) -> list[dict[str, Any]]:
        """nvidia-smi at most every 10 s: it is slow, and free memory changes slowly."""
        at, info = self._gpus
        if time.monotonic() - at > 10.0:
            info = [
                {"index": g.index, "total_bytes": g.total, "free_bytes": g.free}
                for g in query_gpus()
            ]
            self._gpus = (time.monotonic(), info)
        return info

    async def converge(self, sup: Supervisor, desired: list[dict[str, Any]]) -> None:
        wanted: dict[str, LaunchSpec] = {}
        for raw in desired:
            try:
                spec = LaunchSpec.model_validate(raw)
            except ValidationError as exc:
                log.error("ignoring an invalid launch spec from the gateway: %s", exc)
                continue
            wanted[spec.uid] = spec
        for uid in list(self._specs):
            current = wanted.get(uid)
            if current is None or current.model_dump_json() != self._specs[uid]:
                self._specs.pop(uid)
                with contextlib.suppress(UnknownInstance):
                    await sup.terminate(uid)
        for uid, spec in wanted.items():
            if uid in self._specs:
                continue
            self._specs[uid] = spec.model_dump_json()
            try:
                await sup.launch(spec, wait=False, persist=False)
            except LaunchError as exc:
                log.error("cannot launch %s: %s", uid, exc.message)


def read_token(path: Path | None) -> str:
    """The node token from `path` or MODELPORT_NODE_TOKEN; SystemExit saying how otherwise."""
    if path is not None:
        try:
            token = path.expanduser().read_text().strip()
        except OSError as exc:
            raise SystemExit(
                f"modelport node: cannot read --node-token-file {path}: {exc}"
            ) from None
    else:
        configured = Settings().node_token  # MODELPORT_NODE_TOKEN (or node_token in the config)
        token = configured.get_secret_value().strip() if configured else ""
    if not token:
        raise SystemExit(
            "modelport node: no node token: set MODELPORT_NODE_TOKEN or --node-token-file (the "
            "gateway's node_token, or one issued with POST /api/nodes/tokens {name: <node id>})"
        )
    return token


def run_node(agent: NodeAgent) -> None:
    """Run until SIGINT/SIGTERM, then stop every worker; refuse to expose workers unguarded."""
    try:
        cluster_secret.require_secret(agent.options.worker_host, agent.secret)
    except ValueError as exc:
        raise SystemExit(f"modelport node: {exc}") from None
    configure_logging(agent.settings.log_format, agent.settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    asyncio.run(main())
