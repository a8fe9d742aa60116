"""Soak test: N concurrent streaming chat clients for D seconds through a real gateway process
against a fast raw-asyncio SSE upstream. Reports errors, gateway RSS before/after, TTFB and
total latency percentiles, and how many usage rows reached the database.

    .venv/bin/python bench/soak/soak.py --concurrency 500 --duration 60

Everything listens on 127.0.0.1; the loops are bounded by --duration and --max-requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "soak-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


async def wait_up(url: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(url)


async def client_loop(
    session: aiohttp.ClientSession, url: str, key: str, stop: float, stats: dict, budget: list[int]
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < stop and budget[0] > 0:
        budget[0] -= 1
        t0 = time.perf_counter()
        ttfb = None
        try:
            async with session.post(url, json=body, headers=headers) as r:
                if r.status != 200:
                    stats["errors"].append(f"HTTP {r.status}")
                    await r.read()
                    continue
                done = False
                async for line in r.content:
                    if ttfb is None and line.startswith(b"data:"):
                        ttfb = time.perf_counter() - t0
                    if b'"error"' in line:
                        stats["errors"].append(line[:200].decode())
                    if line.startswith(b"data: [DONE]"):
                        done = True
                if not done:
                    stats["errors"].append("stream ended without [DONE]")
                    continue
        except (aiohttp.ClientError, TimeoutError) as exc:
            stats["errors"].append(repr(exc)[:200])
            continue
        stats["ttfb"].append(ttfb or 0.0)
        stats["total"].append(time.perf_counter() - t0)


async def run(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="modelport-soak-"))
    up_port, gw_port = free_port(), free_port()
    env = {
        **os.environ,
        "MODELPORT_HOME": str(home),
        "MODELPORT_ADMIN_TOKEN": ADMIN,
        "MODELPORT_RUNTIME_ENABLED": "false",
        "MODELPORT_LOG_FORMAT": "json",
    }
    py = sys.executable
    up = subprocess.Popen(
        [
            py,
            str(Path(__file__).with_name("sse_upstream.py")),
            "--port",
            str(up_port),
            "--chunks",
            str(args.chunks),
            "--gap",
            str(args.gap),
        ],
    )
    log = (home / "gateway.log").open("wb")
    gw = subprocess.Popen(
        [
            py,
            "-m",
            "uvicorn",
            "gateway.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(gw_port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "30",
            "--backlog",
            "4096",
        ],
        cwd=ROOT,
        env=env,
        stderr=log,
    )
    base = f"http://127.0.0.1:{gw_port}"
    try:
        await wait_up(f"{base}/health")
        async with aiohttp.ClientSession(headers={"Authorization": ADMIN}) as admin:
            async with admin.post(
                f"{base}/api/channel/",
                json={
                    "type": 50,
                    "name": "fast",
                    "base_url": f"http://127.0.0.1:{up_port}",
                    "models": "m",
                },
            ) as r:
                assert (await r.json())["success"]
            async with admin.post(
                f"{base}/api/token/", json={"name": "soak", "unlimited_quota": True}
            ) as r:
                key = (await r.json())["data"]["key"]
        # warm-up, then measure
        conn = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
            warm = {"errors": [], "ttfb": [], "total": []}
            await asyncio.gather(
                *(
                    client_loop(
                        s, f"{base}/v1/chat/completions", key, time.monotonic() + 3, warm, [50]
                    )
                    for _ in range(10)
                )
            )
            rss_before = rss_mb(gw.pid)
            stats = {"errors": [], "ttfb": [], "total": []}
            budget = [args.max_requests]
            t0 = time.monotonic()
            stop = t0 + args.duration
            await asyncio.gather(
                *(
                    client_loop(s, f"{base}/v1/chat/completions", key, stop, stats, budget)
                    for _ in range(args.concurrency)
                )
            )
            elapsed = time.monotonic() - t0
        rss_after = rss_mb(gw.pid)
        async with (
            aiohttp.ClientSession(headers={"Authorization": ADMIN}) as admin,
            admin.get(f"{base}/metrics") as r,
        ):
            metrics = await r.text()
        gw.terminate()
        gw.wait(60)
        rows = (
            sqlite3.connect(home / "modelport.db")
            .execute("SELECT count(*) FROM usagelog")
            .fetchone()[0]
        )
        done = len(stats["total"])
        errors = stats["errors"]
        return {
            "concurrency": args.concurrency,
            "duration_s": round(elapsed, 1),
            "chunks_per_stream": args.chunks,
            "gap_s": args.gap,
            "streams_completed": done,
            "streams_per_s": round(done / elapsed, 1),
            "errors": len(errors),
            "error_samples": sorted(set(errors))[:5],
            "ttfb_ms": {p: round(pct(stats["ttfb"], p), 1) for p in (50, 90, 99)},
            "total_ms": {p: round(pct(stats["total"], p), 1) for p in (50, 90, 99)},
            "total_mean_ms": round(statistics.fmean(stats["total"]) * 1000, 1) if done else None,
            "gateway_rss_mb_before": round(rss_before, 1),
            "gateway_rss_mb_after": round(rss_after, 1),
            "usage_rows": rows,
            "usage_rows_expected": done
            + len(warm["total"])
            + sum(1 for e in errors if "stream" in e or '"error"' in e),
            "open_streams_metric": next(
                (ln for ln in metrics.splitlines() if ln.startswith("modelport_open_streams ")), ""
            ),
            "cpus": os.cpu_count(),
        }
    finally:
        for p in (gw, up):
            if p.poll() is None:
                p.kill()
        log.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--concurrency", type=int, default=500)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--gap", type=float, default=0.05)
    p.add_argument("--max-requests", type=int, default=2_000_000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
