"""Start and stop the processes a benchmark compares (pinned with taskset when asked)."""

from __future__ import annotations

import os
import shutil
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


def pinned(cmd: list[str], cpus: str | None, nice: int | None = None) -> list[str]:
    """Prefix `taskset -c CPUS` (pinning) and `nice -n N` (priority over other tenants of a
    shared machine) when asked for and possible."""
    if nice is None:
        nice = int(os.environ.get("BENCH_NICE", "0")) or None
    if nice and shutil.which("nice") and (nice > 0 or os.geteuid() == 0):
        cmd = ["nice", "-n", str(nice), *cmd]
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    return cmd


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads, and its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / ticks


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


class Proc:
    """A child process whose output goes to a log file; SIGTERM then SIGKILL on stop."""

    def __init__(
        self,
        cmd: list[str],
        *,
        name: str,
        env: dict[str, str] | None = None,
        cpus: str | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.cmd = pinned(cmd, cpus)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.log_path = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_http(self, url: str, *, limit_s: float = 120.0, ok: Any = None) -> None:
        """Poll `url` until it answers 200 (and `ok(json)` holds); a bound, not a timing."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                r = httpx.get(url, timeout=5)
                if r.status_code == 200 and (ok is None or ok(r.json())):
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready at {url} after {limit_s}s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> Proc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]


def set_threads(n: int) -> None:
    """Give every process started from now on `n` compute threads (OpenMP, MKL, torch,
    CTranslate2 read these). On a shared 2-core machine, 2 spinning OpenMP threads per model
    collapse when other tenants take a core; 1 thread keeps the comparison stable."""
    if n > 0:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(n)


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so `with` blocks stop the servers a benchmark started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
