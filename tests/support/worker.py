"""Run a real worker process (`python -m local_runtime.worker`) for tests.

Shared with the supervisor and gateway tests: `with WorkerProcess(spec) as w: w.base_url`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spec_dict(**fields: Any) -> dict[str, Any]:
    """A ResolvedSpec as JSON, with defaults for a fake LLM."""
    base: dict[str, Any] = {
        "uid": "fake-llm",
        "model_name": "fake",
        "model_type": "llm",
        "engine": "fake",
        "model_format": "none",
        "model_path": "/nonexistent",
    }
    base.update(fields)
    return base


class WorkerProcess:
    """A worker subprocess on a free loopback port; stopped with SIGTERM on exit."""

    def __init__(
        self,
        spec: dict[str, Any],
        *,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        wait: str | None = "ready",
        wait_limit_s: float = 240.0,
    ) -> None:
        self.spec = spec
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="modelport-worker-")
        self.spec_path = Path(self._dir.name) / "spec.json"
        self.spec_path.write_text(json.dumps(spec))
        self.stderr_path = Path(self._dir.name) / "stderr.log"
        self._extra_args = extra_args or []
        self._env = {**os.environ, **(env or {})}
        self._wait = wait
        self._wait_limit_s = wait_limit_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._final_stderr = ""

    def start(self) -> WorkerProcess:
        cmd = [
            sys.executable,
            "-m",
            "local_runtime.worker",
            "--spec",
            str(self.spec_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self._extra_args,
        ]
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self._env, stderr=self._stderr)
        if self._wait:
            self.wait_for(self._wait)
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.base_url}/health", timeout=5)
        except httpx.TransportError:
            return None
        return r.json()  # type: ignore[no-any-return]

    def wait_for(self, status: str) -> dict[str, Any]:
        """Poll /health until `status` (or "error"); a bound, not a timing assertion."""
        assert self.proc is not None
        deadline = time.monotonic() + self._wait_limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.stderr()}")
            health = self.health()
            if health and health["status"] in (status, "error"):
                if health["status"] != status:
                    raise RuntimeError(f"worker failed: {health.get('error')}")
                return health
            time.sleep(0.05)
        raise TimeoutError(f"worker not {status} after {self._wait_limit_s}s: {self.stderr()}")

    def wait_for_error(self) -> dict[str, Any]:
        return self.wait_for("error")

    def stderr(self) -> str:
        if not self.stderr_path.exists():
            return self._final_stderr
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        self._final_stderr = self.stderr()  # stderr() still answers once the folder is gone
        self._dir.cleanup()
        return self.proc.returncode

    def __enter__(self) -> WorkerProcess:
        """A worker that fails to start is stopped here: `with` calls no `__exit__` when
        `__enter__` raises."""
        try:
            return self.start()
        except BaseException:
            if self.proc is not None:
                self.stop()
            else:
                self._dir.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
