"""A real gateway process with a throwaway MODELPORT_HOME, plus the One API-shaped admin calls
the benchmarks need (a channel to an upstream, an unlimited sk- token)."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.common.procs import Proc, free_port, python_cmd

ROOT = Path(__file__).resolve().parents[2]


class Gateway:
    def __init__(
        self,
        *,
        cpus: str | None = None,
        runtime: bool = False,
        env: dict[str, str] | None = None,
        workers: int | None = None,
    ) -> None:
        """`workers=None`: bench/common/serve_gateway.py (one process, access log off);
        `workers=N`: the real `modelport serve --workers N` with its defaults (access log on).
        The gateway code served is BENCH_GATEWAY_ROOT's when set (bench/gateway/ab_worktree.sh
        points it at the base revision's worktree), this checkout's otherwise."""
        code = os.environ.get("BENCH_GATEWAY_ROOT") or str(ROOT)
        self.home = tempfile.TemporaryDirectory(prefix="modelport-bench-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = "bench-admin-" + secrets.token_hex(8)
        # An empty config file: the repository's config/modelport.yaml must not leak in.
        cfg = Path(self.home.name) / "modelport.yaml"
        cfg.write_text("{}\n")
        cmd = (
            python_cmd(str(ROOT / "bench" / "common" / "serve_gateway.py"), str(self.port))
            if workers is None
            else [
                str(Path(sys.executable).parent / "modelport"),
                "serve",
                "--workers",
                str(workers),
            ]
        )
        self.proc = Proc(
            cmd,
            name="gateway",
            cpus=cpus,
            cwd=Path(code),
            env={
                "PYTHONPATH": code,
                "MODELPORT_HOME": self.home.name,
                "MODELPORT_CONFIG": str(cfg),
                "MODELPORT_ADMIN_TOKEN": self.admin_token,
                "MODELPORT_RUNTIME_ENABLED": "true" if runtime else "false",
                # access log off, as uvicorn's is (serve_gateway.py); `modelport serve` keeps it
                "MODELPORT_LOG_LEVEL": "WARNING" if workers is None else "INFO",
                "MODELPORT_PORT": str(self.port),
                "HF_HUB_OFFLINE": "1",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                **(env or {}),
            },
        )

    def start(self, limit_s: float = 120.0) -> Gateway:
        self.proc.start()
        self.proc.wait_http(self.url + "/health", limit_s=limit_s)
        return self

    def stop(self) -> None:
        self.proc.stop()
        self.home.cleanup()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def admin(self, method: str, path: str, json: Any = None, timeout: float = 60) -> Any:
        r = httpx.request(
            method,
            self.url + path,
            json=json,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=timeout,
        )
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:800]}")
        body = r.json()
        if isinstance(body, dict) and body.get("success") is False:
            raise RuntimeError(f"{method} {path}: {body.get('message')}")
        return body

    def add_channel(self, name: str, base_url: str, models: list[str], type_: int = 50) -> None:
        self.admin(
            "POST",
            "/api/channel/",
            {
                "name": name,
                "type": type_,
                "base_url": base_url,
                "key": "sk-upstream",
                "models": ",".join(models),
            },
        )

    def create_token(self, name: str = "bench") -> str:
        body = self.admin("POST", "/api/token/", {"name": name, "unlimited_quota": True})
        key = body["data"]["key"]
        return key if key.startswith("sk-") else "sk-" + key
