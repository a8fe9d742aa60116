"""Gateway replicas and GPU nodes as separate OS processes, the way they are deployed.

In-thread servers would share one interpreter (and could share state by accident); these share
only PostgreSQL, Redis and the network, like replicas behind a load balancer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.support import polling
from tests.support.servers import free_port

MODELPORT = str(Path(sys.executable).parent / "modelport")
SECRET = "scale-test-secret-key-0123456789abcdef"


def wait_for(check: Callable[[], Any], what: str, limit_s: float = 60.0) -> Any:
    """tests.support.polling.wait_for, where a replica still starting (HTTP errors) is not yet."""
    return polling.wait_for(check, what, limit_s, ignore=(httpx.HTTPError,))


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=self._out, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


class Replica(Proc):
    """`modelport serve` on its own port and home, sharing the database and Redis."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "MODELPORT_HOME": str(home),
            "MODELPORT_PORT": str(self.port),
            "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
            "MODELPORT_SECRET_KEY": SECRET,
            "MODELPORT_RUNTIME_ENABLED": "false",
            "MODELPORT_USAGE_FLUSH_INTERVAL_S": "0.05",
            "MODELPORT_LOG_FORMAT": "text",
            "MODELPORT_LOG_LEVEL": "WARNING",
            **env,
        }
        super().__init__([MODELPORT, "serve", "--log-level", "warning"], env, home / "serve.log")
        self.admin = httpx.Client(
            base_url=self.url, headers={"Authorization": ADMIN_TOKEN}, timeout=60
        )

    def ready(self, limit_s: float = 60.0) -> Replica:
        def up() -> bool:
            if not self.alive():
                raise AssertionError(f"replica exited:\n{self.tail()}")
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200

        wait_for(up, f"replica on {self.port}", limit_s)
        return self

    def api(self, method: str, path: str, **kw: Any) -> Any:
        body = self.admin.request(method, path, **kw).json()
        assert body.get("success"), body
        return body["data"]

    def stop(self) -> None:
        self.admin.close()
        super().stop()


class Node(Proc):
    """`modelport node` heartbeating to a gateway (with `secret` as its cluster secret)."""

    def __init__(
        self,
        home: Path,
        *,
        gateway: str,
        token: str,
        node_id: str,
        secret: str | None = None,
        bind_host: str = "127.0.0.1",
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id
        args = [
            MODELPORT, "node", "--gateway", gateway, "--node-id", node_id,
            "--advertise-host", "127.0.0.1", "--bind-host", bind_host, "--home", str(home),
        ]  # fmt: skip
        env = {"MODELPORT_LOG_FORMAT": "text", "HF_HUB_OFFLINE": "1", "MODELPORT_NODE_TOKEN": token}
        if secret is not None:
            env["MODELPORT_CLUSTER_SECRET"] = secret
        super().__init__(args, env, home / "node.log")


def connected(gw: Any, names: set[str]) -> set[str]:
    """Wait until `names` all heartbeat to `gw` (a placement needs a connected node)."""
    return wait_for(
        lambda: names <= {n["node_id"] for n in gw.api("GET", "/api/nodes")},
        f"nodes {sorted(names)} connected",
        120,
    )


def ready_nodes(gw: Any, uid: str) -> set[str]:
    """The nodes that report a ready worker for `uid`."""
    return {
        rec["node_id"]
        for rec in gw.api("GET", "/api/nodes")
        if any(w["uid"] == uid for w in rec["workers"])
    }


def beat(
    url: str,
    token: str,
    record: dict[str, Any],
    *,
    secret: str | None = None,
    now: float | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    """One heartbeat as `modelport node` signs it (gateway.cluster.heartbeat)."""
    import orjson

    from gateway.cluster import heartbeat

    body = raw if raw is not None else orjson.dumps(record)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        **heartbeat.headers(secret or token, body, with_secret=secret is not None, now=now),
    }
    return httpx.post(f"{url}{heartbeat.PATH}", content=body, headers=headers, timeout=60)
