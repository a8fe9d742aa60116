"""Shared pieces of the GPU benchmarks: start a worker (and optionally the gateway) as real
processes, drive them with a closed-loop aiohttp load generator, and summarise.

Everything runs on the lent GPU machine; the scripts are also runnable on a CPU box with
`--device cpu --quick` to check they work before spending device time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def wait_http(url: str, limit: float = 600.0, want: str | None = None) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body = json.loads(r.read() or b"{}")
                if want is None or body.get("status") == want:
                    return
                if body.get("status") == "error":
                    raise RuntimeError(f"{url}: {body.get('error')}")
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {limit}s")


class Proc:
    """A child process in its own process group, killed with its children on stop()."""

    def __init__(self, cmd: list[str], *, env: dict[str, str] | None = None, log: str = "") -> None:
        self.log = open(log or os.devnull, "wb")  # noqa: SIM115
        self.p = subprocess.Popen(
            cmd,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


def start_worker(spec: dict[str, Any], *, log: str = "") -> tuple[Proc, str]:
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="mp-bench-"))
    (tmp / "spec.json").write_text(json.dumps(spec))
    proc = Proc(
        [
            sys.executable,
            "-m",
            "local_runtime.worker",
            "--spec",
            str(tmp / "spec.json"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log=log,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", want="ready")
    return proc, url


ADMIN = "bench-admin-token"


def start_gateway(*, log: str = "") -> tuple[Proc, str]:
    port = free_port()
    home = tempfile.mkdtemp(prefix="mp-bench-home-")
    code = (
        "import uvicorn; from gateway.app import create_app; "
        f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning', "
        "access_log=False, loop='uvloop', http='httptools')"
    )
    env = {
        "MODELPORT_HOME": home,
        "MODELPORT_ADMIN_TOKEN": ADMIN,
        "MODELPORT_RUNTIME_ENABLED": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    proc = Proc([sys.executable, "-c", code], env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/status")
    return proc, url


def gateway_route(gateway: str, upstream_v1: str, models: list[str]) -> str:
    """Add an OpenAI-compatible channel to `upstream_v1` and return a fresh sk- token."""
    import urllib.request

    def call(path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            f"{gateway}{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": ADMIN, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            out = json.loads(r.read())
        assert out["success"], out
        return out["data"]

    call(
        "/api/channel/",
        {
            "name": "bench",
            "type": 50,
            "base_url": upstream_v1,
            "models": ",".join(models),
            "config": {"stream_usage": True},
        },
    )
    return str(call("/api/token/", {"name": "bench", "unlimited_quota": True})["key"])


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0

    def row(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rps": self.requests / self.seconds if self.seconds else 0.0,
            "p50_ms": pct(self.latencies, 50) * 1000,
            "p99_ms": pct(self.latencies, 99) * 1000,
            "ttft_p50_ms": pct(self.ttfts, 50) * 1000 if self.ttfts else None,
            "ttft_p99_ms": pct(self.ttfts, 99) * 1000 if self.ttfts else None,
            "gap_p50_ms": pct(self.gaps, 50) * 1000 if self.gaps else None,
            "gap_p99_ms": pct(self.gaps, 99) * 1000 if self.gaps else None,
            "tokens_per_s": self.tokens / self.seconds if self.seconds else 0.0,
        }


async def closed_loop(
    url: str,
    body: Callable[[int], dict[str, Any]],
    *,
    concurrency: int,
    duration: float,
    headers: dict[str, str] | None = None,
    stream: bool = False,
    warmup: float = 1.0,
) -> LoadResult:
    """`concurrency` clients, each sending its next request when the last one finished."""
    res = LoadResult()
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout, headers=headers) as http:
        start = time.perf_counter()
        measure_from = start + warmup
        stop = measure_from + duration

        async def client(i: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                ok, toks, ttft, gaps = await _one(http, url, body(i * 1_000_000 + n), stream)
                t1 = time.perf_counter()
                n += 1
                if t1 < measure_from or t1 > stop:
                    continue
                res.requests += 1
                res.errors += 0 if ok else 1
                res.latencies.append(t1 - t0)
                res.tokens += toks
                if ttft is not None:
                    res.ttfts.append(ttft - t0)
                res.gaps.extend(gaps)

        await asyncio.gather(*(client(i) for i in range(concurrency)))
        res.seconds = duration
    return res


async def _one(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], stream: bool
) -> tuple[bool, int, float | None, list[float]]:
    async with http.post(url, json=body) as r:
        if not stream:
            data = await r.read()
            if r.status != 200:
                return False, 0, None, []
            obj = json.loads(data)
            usage = obj.get("usage") or {}
            return True, int(usage.get("completion_tokens") or 0), None, []
        if r.status != 200:
            await r.read()
            return False, 0, None, []
        first: float | None = None
        last: float | None = None
        gaps: list[float] = []
        toks = 0
        buf = b""
        async for chunk in r.content.iter_any():
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if not event.startswith(b"data:") or event[5:].strip() == b"[DONE]":
                    continue
                obj = json.loads(event[5:])
                choices = obj.get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    elif last is not None:
                        gaps.append(now - last)
                    last = now
                    toks += 1
                if obj.get("usage"):
                    toks = int(obj["usage"].get("completion_tokens") or toks)
        return True, toks, first, gaps


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:,.1f}" if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def gpu_name() -> str:
    try:
        return (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or "cpu"
        )
    except (OSError, subprocess.TimeoutExpired):
        return "cpu"


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _child(args: tuple[Any, ...]) -> LoadResult:
    import importlib

    url, body_ref, conc, duration, headers, stream, warmup, offset = args
    mod, name = body_ref.split(":")
    fn = getattr(importlib.import_module(mod), name)
    return asyncio.run(
        closed_loop(
            url,
            lambda i: fn(i + offset),
            concurrency=conc,
            duration=duration,
            headers=headers,
            stream=stream,
            warmup=warmup,
        )
    )


def load(
    url: str,
    body_ref: str,
    *,
    concurrency: int,
    duration: float,
    headers: dict[str, str] | None = None,
    stream: bool = False,
    warmup: float = 1.0,
    procs: int = 0,
) -> LoadResult:
    """Closed-loop load from several client processes (a Python client process tops out at a
    few thousand requests/s, which would cap the measurement instead of the server).
    `body_ref` is "module:function" building request i's body."""
    from concurrent.futures import ProcessPoolExecutor

    procs = procs or max(1, min(concurrency, (os.cpu_count() or 2) // 4, 8))
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    jobs = [
        (url, body_ref, c, duration, headers, stream, warmup, i * 10_000_000)
        for i, c in enumerate(shares)
        if c
    ]
    with ProcessPoolExecutor(len(jobs)) as pool:
        parts = list(pool.map(_child, jobs))
    total = LoadResult(seconds=duration)
    for p in parts:
        total.requests += p.requests
        total.errors += p.errors
        total.latencies += p.latencies
        total.ttfts += p.ttfts
        total.gaps += p.gaps
        total.tokens += p.tokens
    return total


def run_clients(conc: int, duration: float, one: Any) -> dict[str, Any]:
    """`conc` threads calling `one()` back to back for `duration` seconds."""
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    lock = threading.Lock()

    def client() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            ok = one()
            with lock:
                lat.append(time.perf_counter() - t0)
                errors += 0 if ok else 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"requests": len(lat), "errors": errors, "wall": time.perf_counter() - t0, "lat": lat}


def row_stats(r: dict[str, Any]) -> dict[str, Any]:
    """Requests/s over the whole run (tail included, the same for every path) and latency."""
    return {
        "requests": r["requests"],
        "errors": r["errors"],
        "per_s": r["requests"] / r["wall"],
        "p50_s": median(r["lat"]),
        "p99_s": pct(r["lat"], 99),
    }
