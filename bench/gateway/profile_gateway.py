"""Where the gateway's CPU goes per relayed request: the gateway app runs under cProfile inside
this process (uvicorn, uvloop, httptools, as serve_gateway.py) while bench/common/httpload.py
drives it from another process through the same channel/token setup as overhead.py.

    python bench/gateway/profile_gateway.py [--seconds 10] [--conns 10] [--stream]

Writes results/profile_cprofile.txt (top functions by own time and by cumulative time, with call
counts per request). cProfile inflates many-small-call code; read it for ranking, and overhead.py's
"gw CPU µs/req" for the absolute cost.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import uvicorn

from bench.common.procs import ROOT, Proc, free_port, pinned, python_cmd

RESULTS = ROOT / "bench" / "gateway" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument(
        "--async-deps",
        action="store_true",
        help="experiment: override the route's sync dependencies (run in the threadpool) with "
        "async twins, to measure what the threadpool hop costs",
    )
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="modelport-prof-")
    cfg = Path(home) / "modelport.yaml"
    cfg.write_text("{}\n")
    admin = "bench-admin-profile"
    os.environ.update(
        MODELPORT_HOME=home,
        MODELPORT_CONFIG=str(cfg),
        MODELPORT_ADMIN_TOKEN=admin,
        MODELPORT_RUNTIME_ENABLED="false",
        MODELPORT_LOG_LEVEL="WARNING",
    )
    from gateway.app import create_app
    from gateway.settings import Settings

    up_port, gw_port = free_port(), free_port()
    upstream = Proc(
        python_cmd(str(ROOT / "bench/gateway/upstream.py"), str(up_port)), name="upstream"
    ).start()
    app = create_app(Settings())
    if a.async_deps:
        swapped = async_twins(app)
        print("async twins for:", ", ".join(swapped))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=gw_port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
        )
    )

    async def serve() -> None:
        _LOOP.append(asyncio.get_running_loop())
        await server.serve()

    import uvloop

    thread = threading.Thread(target=lambda: uvloop.run(serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{gw_port}"
    while not server.started:
        time.sleep(0.05)
    h = {"Authorization": f"Bearer {admin}"}
    httpx.post(
        url + "/api/channel/",
        headers=h,
        json={
            "name": "up",
            "type": 50,
            "base_url": f"http://127.0.0.1:{up_port}/v1",
            "key": "sk-x",
            "models": "bench-model",
        },
    ).raise_for_status()
    key = httpx.post(
        url + "/api/token/", headers=h, json={"name": "p", "unlimited_quota": True}
    ).json()["data"]["key"]
    fd, body = tempfile.mkstemp(suffix=".json")
    os.write(
        fd,
        (
            b'{"model":"bench-model","max_tokens":16,"messages":[{"role":"user",'
            b'"content":"What is the capital of France?"}]'
            + (b',"stream":true}' if a.stream else b"}")
        ),
    )
    os.close(fd)
    base = python_cmd(
        "-m",
        "bench.common.httpload",
        url + "/v1/chat/completions",
        "--conns",
        str(a.conns),
        "--body",
        body,
        "--header",
        f"Authorization: Bearer {key}",
    )
    cmd = [*base, "--duration", str(a.seconds), "--warmup", "1"]
    # Warm up un-profiled (caches, pools), then profile only the server thread's loop.
    subprocess.run(
        pinned([*base, "--duration", "2", "--warmup", "0.5"], None),
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    # Unprofiled: requests/s and CPU per request of this process (all its threads).
    cpu0 = time.process_time()
    plain = subprocess.run(pinned(cmd, None), cwd=ROOT, check=True, capture_output=True, text=True)
    plain_r = json.loads(plain.stdout.strip().splitlines()[-1])
    cpu_us = (time.process_time() - cpu0) / max(
        1, plain_r["requests"] * (a.seconds + 1) / a.seconds
    )
    summary = (
        f"unprofiled: {plain_r['rps']:.1f} req/s at {a.conns} conns, p50 "
        f"{plain_r['p50_ms']:.1f} ms, p99 {plain_r['p99_ms']:.1f} ms, gateway CPU "
        f"{cpu_us * 1e6:.0f} µs/request, threads {threading.active_count()}"
    )
    print(summary, flush=True)
    prof = cProfile.Profile()
    loop = server_loop(server)
    asyncio.run_coroutine_threadsafe(_enable(prof), loop).result()
    out = subprocess.run(pinned(cmd, None), cwd=ROOT, check=True, capture_output=True, text=True)
    asyncio.run_coroutine_threadsafe(_disable(prof), loop).result()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    n = max(1, int(result["requests"] * (a.seconds + 1) / a.seconds))
    text = io.StringIO()
    text.write(
        f"{' '.join(sys.argv)}\n{summary}\nprofiled load: {result}\nrequests profiled ~{n}\n\n"
    )
    text.write(by_package(prof, n) + "\n")
    for key_, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats(key_).print_stats(35)
        text.write(f"=== by {title} ===\n{s.getvalue()}\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = (
        "profile_cprofile"
        + ("_stream" if a.stream else "")
        + ("_asyncdeps" if a.async_deps else "")
        + ".txt"
    )
    (RESULTS / name).write_text(text.getvalue())
    print(text.getvalue()[:6000])
    server.should_exit = True
    thread.join(10)
    upstream.stop()


def by_package(prof: cProfile.Profile, requests: int) -> str:
    """Own time summed by where the code lives (site-packages top folder, or gateway/...)."""
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.items():
        if "site-packages/" in filename:
            key = filename.split("site-packages/")[1].split("/")[0]
        elif "/work/main/" in filename or str(ROOT) in filename:
            key = "/".join(Path(filename).relative_to(ROOT).parts[:2])
        elif filename.startswith("~") or filename.startswith("<"):
            key = "builtins (C calls)"
        else:
            key = "stdlib " + Path(filename).name
        totals[key] = totals.get(key, 0.0) + tottime
    whole = sum(totals.values())
    lines = [f"=== own time by package (cProfile; µs per request over ~{requests}) ==="]
    for key, t in sorted(totals.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"{100 * t / whole:5.1f} %  {t / requests * 1e6:7.0f} µs  {key}")
    return "\n".join(lines) + "\n"


def async_twins(app: Any) -> list[str]:
    """Every plain-`def` dependency in gateway/deps.py (FastAPI runs those in its threadpool)
    gets an `async def` twin through FastAPI's dependency_overrides."""
    import inspect

    from gateway import deps

    names = []
    for name, fn in vars(deps).items():
        if (
            inspect.isfunction(fn)
            and fn.__module__ == deps.__name__
            and not inspect.iscoroutinefunction(fn)
            and not inspect.isgeneratorfunction(fn)
            and not inspect.isasyncgenfunction(fn)
        ):
            app.dependency_overrides[fn] = _twin(fn)
            names.append(name)
    return names


def _twin(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    async def twin(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return twin


def server_loop(server: uvicorn.Server) -> asyncio.AbstractEventLoop:
    return _LOOP[0]


_LOOP: list[asyncio.AbstractEventLoop] = []


async def _enable(prof: cProfile.Profile) -> None:
    prof.enable()  # cProfile hooks the thread that calls enable(): the server's loop thread


async def _disable(prof: cProfile.Profile) -> None:
    prof.disable()


if __name__ == "__main__":
    main()
