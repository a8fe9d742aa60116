"""One worker process: start it, read its output into a bounded log, watch it, stop it.

Workers run in their own process group, so stopping one also stops whatever it started
(SIGTERM to the group, SIGKILL after a grace). On Linux each worker also asks the kernel to
SIGKILL it when the gateway that started it dies (PR_SET_PDEATHSIG), so a crashed or killed
gateway leaves no orphans holding ports and GPU memory. The death signal is tied to the thread
that forks, which is why workers are spawned from the event-loop thread (asyncio's subprocess
support), never from a short-lived pool thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from local_runtime.supervisor.logs import BoundedLog

PR_SET_PDEATHSIG = 1
ERROR_PREFIX = b"modelport-worker: "
READ_LIMIT = 1024 * 1024


class WorkerFailed(Exception):
    """A worker that did not become ready, died, or stopped answering; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(
        None, use_errno=True
    )  # loaded here, in the parent: nothing to load after fork
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class WorkerProcess:
    """`python -m local_runtime.worker` on a loopback port (see local_runtime.worker's contract)."""

    def __init__(
        self,
        *,
        spec_path: Path,
        port: int,
        env: dict[str, str],
        log: BoundedLog,
        error_exit_grace_s: float = 30.0,
        host: str = "127.0.0.1",
        key: str | None = None,
    ) -> None:
        self.host = host
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}
        self.spec_path = spec_path
        self.port = port
        self.env = env
        self.log = log
        self.error_exit_grace_s = error_exit_grace_s
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.error_line: str | None = None
        self._pump: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        cmd = [
            sys.executable, "-m", "local_runtime.worker",
            "--spec", str(self.spec_path),
            "--host", self.host,
            "--port", str(self.port),
            "--error-exit-grace", str(self.error_exit_grace_s),
        ]  # fmt: skip
        self.log.mark(f"starting worker on port {self.port}: {' '.join(cmd)}")
        self.proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            limit=READ_LIMIT,
            # its own session, so its own process group (uvloop has no process_group=)
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        self.started_at = time.time()
        self.error_line = None
        self._pump = asyncio.create_task(self._drain(self.proc), name=f"worker-log-{self.port}")

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        """Copy the worker's output to the log file, keeping its last error line."""
        stream = proc.stdout
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than READ_LIMIT: take it in pieces
                line = await stream.read(READ_LIMIT)
            if not line:
                break
            if line.startswith(ERROR_PREFIX):
                self.error_line = line[len(ERROR_PREFIX) :].decode("utf-8", "replace").strip()
            self.log.write(line)

    def exit_reason(self) -> str:
        rc = self.proc.returncode if self.proc is not None else None
        if self.error_line:
            return self.error_line
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = str(-rc)
            return f"worker process was killed by {name}"
        tail = " | ".join(line for line in self.log.tail(3) if line.strip())
        return f"worker process exited with status {rc}" + (f": {tail}" if tail else "")

    async def health(self, client: httpx.AsyncClient, limit_s: float) -> dict[str, Any] | None:
        """/health, or None when the worker does not answer in time."""
        try:
            resp = await client.get(f"{self.url}/health", timeout=limit_s, headers=self._auth)
            body = resp.json()
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        if self.proc is not None and body.get("pid") not in (None, self.proc.pid):
            return None  # another process answers on this port: not our worker
        return body

    async def wait_ready(
        self,
        client: httpx.AsyncClient,
        *,
        limit_s: float,
        on_health: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll /health until ready; WorkerFailed with the worker's own message otherwise."""
        deadline = time.monotonic() + limit_s
        delay = 0.05
        while True:
            if self.proc is None or self.proc.returncode is not None:
                await self._flush_log()
                raise WorkerFailed(self.exit_reason())
            health = await self.health(client, 5.0)
            if health is not None:
                if on_health is not None:
                    on_health(health)
                if health.get("status") == "ready":
                    return health
                if health.get("status") == "error":
                    raise WorkerFailed(str(health.get("error") or "the model failed to load"))
            if time.monotonic() > deadline:
                raise WorkerFailed(f"the model was not ready after {limit_s:g}s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def watch(
        self,
        client: httpx.AsyncClient,
        *,
        interval: float,
        health_limit_s: float,
        hung_after: int,
        on_health: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """Return (why) once the worker died, reports an error, or stops answering /health."""
        assert self.proc is not None
        misses = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), interval)
            if self.proc.returncode is not None:
                await self._flush_log()
                return self.exit_reason()
            health = await self.health(client, health_limit_s)
            if health is None:
                misses += 1
                if misses >= hung_after:
                    return f"worker stopped answering /health ({misses} checks in a row)"
                continue
            misses = 0
            if on_health is not None:
                on_health(health)
            if health.get("status") == "error":
                return str(health.get("error") or "the worker reported an error")

    async def _flush_log(self) -> None:
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump), 2.0)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, grace: float) -> int | None:
        """SIGTERM the group, SIGKILL it after `grace` seconds; returns the exit status."""
        if self.proc is None:
            return None
        if self._stopped:
            return self.proc.returncode
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self.log.mark(f"worker did not stop in {grace:g}s; killing it")
                self._signal_group(signal.SIGKILL)
                await self.proc.wait()
        # anything the worker started and left behind in its group goes too
        self._signal_group(signal.SIGKILL)
        await self._flush_log()
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        self._stopped = True
        self.log.mark(f"worker exited with status {self.proc.returncode}")
        return self.proc.returncode

    async def kill(self) -> None:
        """SIGKILL at once (a hung worker gets no grace)."""
        self._signal_group(signal.SIGKILL)
        await self.stop(grace=5.0)
