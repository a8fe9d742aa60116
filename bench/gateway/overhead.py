"""Issue 2: what the gateway costs. Requests/s and latency through a real gateway process vs
straight to a near-zero-cost upstream, non-streaming and streaming (time to first byte), at 50 and
200 connections, all in one run.

    python bench/gateway/overhead.py [--quick] [--no-pin] [--profile]

Per cell, the same load generator (bench/common/httpload.py, its own process) hits the upstream
directly, then the gateway (channel type 50 -> that upstream, an unlimited sk- token):
- closed loop: saturation requests/s (each connection sends again as soon as it has an answer);
- paced: a fixed request rate the gateway can carry, latency counted from the scheduled send
  time; "added" = gateway minus direct at the same percentile. This is the figure the issue's
  "added p50 < 1 ms, p99 < 5 ms" is about: in a closed loop latency is conns / throughput.
Pinning (default, 2 cores): the gateway gets CPU 0 to itself (one worker process, as the aim
says); the upstream and the load generator share CPU 1, for both the direct and gateway runs.
--profile samples the gateway with py-spy during a closed-loop non-streaming run and writes the
top functions (results/profile_top.txt).
--defaults serves with `modelport serve` as users run it (its access log on, uvicorn's and
ours), instead of bench/common/serve_gateway.py (access log off); the issue 17 goal is stated so.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common.gateway_proc import Gateway
from bench.common.procs import (
    ROOT,
    Proc,
    cpu_seconds,
    exit_on_sigterm,
    free_port,
    loadavg,
    pinned,
    python_cmd,
)
from bench.common.report import table, write_results

MODEL = "bench-model"
RESULTS = ROOT / "bench" / "gateway" / "results"


def body_file(stream: bool) -> str:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    fd, path = tempfile.mkstemp(prefix="bench-body-", suffix=".json")
    os.write(fd, json.dumps(body).encode())
    os.close(fd)
    return path


def load(
    url: str,
    body: str,
    headers: list[str],
    conns: int,
    duration: float,
    warmup: float,
    rate: float,
    cpus: str | None,
) -> dict[str, Any]:
    cmd = python_cmd(
        "-m",
        "bench.common.httpload",
        url,
        "--conns",
        str(conns),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--rate",
        str(rate),
        "--body",
        body,
    )
    for h in headers:
        cmd += ["--header", h]
    out = subprocess.run(
        pinned(cmd, cpus),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=duration + warmup + 300,
    )
    if out.returncode:
        raise RuntimeError(f"load generator failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def summarize_profile(raw: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_count: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_count[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    by_pkg: collections.Counter[str] = collections.Counter()
    for f, c in self_count.items():
        where = f.rpartition("(")[2].split(":")[0]
        by_pkg[where.split("/")[0] if "/" in where else where or "?"] += c
    lines = [f"{total} samples", "", "self %  package (where the CPU is spent, by top folder)"]
    lines += [f"{100 * c / total:5.1f}  {p}" for p, c in by_pkg.most_common(15)]
    lines += ["", "self %  function (file:line)"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in self_count.most_common(top)]
    lines += ["", "inclusive %  function"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in incl.most_common(top * 2)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short runs (3 s per cell)")
    ap.add_argument("--no-pin", action="store_true", help="let the OS place every process")
    ap.add_argument("--profile", action="store_true", help="py-spy the gateway under load")
    ap.add_argument(
        "--defaults",
        action="store_true",
        help="`modelport serve` with its defaults (access log on) instead of serve_gateway.py",
    )
    ap.add_argument("--conns", type=int, nargs="*", default=[50, 200])
    ap.add_argument(
        "--rate",
        type=float,
        default=300.0,
        help="paced requests/s for latency (capped at half the gateway's capacity)",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="run every benchmark process at this niceness (root only for < 0)",
    )
    a = ap.parse_args()
    os.environ["BENCH_NICE"] = str(a.nice)
    exit_on_sigterm()
    duration, warmup = (3.0, 1.0) if a.quick else (10.0, 2.0)
    gw_cpu, side_cpu = (None, None) if a.no_pin or (os.cpu_count() or 1) < 2 else ("0", "1")

    up_port = free_port()
    upstream = Proc(
        python_cmd(str(ROOT / "bench" / "gateway" / "upstream.py"), str(up_port)),
        name="upstream",
        cpus=side_cpu,
    )
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    profile_text = ""
    with upstream, Gateway(cpus=gw_cpu, workers=1 if a.defaults else None) as gw:
        time.sleep(0.3)
        gw.add_channel("bench-upstream", f"http://127.0.0.1:{up_port}/v1", [MODEL])
        key = gw.create_token()
        targets = {
            "direct": (f"http://127.0.0.1:{up_port}/v1/chat/completions", []),
            "gateway": (f"{gw.url}/v1/chat/completions", [f"Authorization: Bearer {key}"]),
        }
        bodies = {False: body_file(False), True: body_file(True)}
        # Sanity: the gateway really relays both shapes.
        for stream, body in bodies.items():
            check = load(targets["gateway"][0], body, targets["gateway"][1], 1, 0.5, 0.1, 0, None)
            if check["errors"] or not check["requests"]:
                raise SystemExit(
                    f"gateway check failed (stream={stream}): {check}\n{gw.proc.tail()}"
                )
        for stream in (False, True):
            for conns in a.conns:
                capacity = 0.0
                for mode in ("closed", "paced"):
                    # Paced at a rate the gateway carries (half its closed-loop rate at most):
                    # latency there is service time, not queueing.
                    rate = 0.0 if mode == "closed" else round(min(a.rate, capacity / 2) or 1)
                    cell: dict[str, Any] = {}
                    for target in ("direct", "gateway"):
                        url, headers = targets[target]
                        before = {p.name: cpu_seconds(p.pid) for p in (upstream, gw.proc)}
                        r = load(
                            url, bodies[stream], headers, conns, duration, warmup, rate, side_cpu
                        )
                        n = max(1, r["requests"]) * (duration + warmup) / duration
                        r["cpu_us_per_req"] = {
                            name: (cpu_seconds(p.pid) - before[name]) / n * 1e6
                            for name, p in (("upstream", upstream), ("gateway", gw.proc))
                        }
                        r["loadavg"] = loadavg()
                        r.update(target=target, stream=stream, mode=mode)
                        raw.append(r)
                        cell[target] = r
                    d, g = cell["direct"], cell["gateway"]
                    if mode == "closed":
                        capacity = g["rps"]
                    lat = "ttfb" if stream else ""
                    p50 = f"{lat}_p50_ms" if stream else "p50_ms"
                    p99 = f"{lat}_p99_ms" if stream else "p99_ms"
                    rows.append(
                        {
                            "surface": "stream (TTFB)" if stream else "non-stream",
                            "conns": conns,
                            "load": "closed loop" if mode == "closed" else f"paced {rate:g}/s",
                            "direct_rps": d["rps"],
                            "gw_rps": g["rps"],
                            "rps_ratio": g["rps"] / d["rps"] if d["rps"] else float("nan"),
                            "direct_p50": d[p50],
                            "gw_p50": g[p50],
                            "added_p50": g[p50] - d[p50],
                            "direct_p99": d[p99],
                            "gw_p99": g[p99],
                            "added_p99": g[p99] - d[p99],
                            "gw_errors": g["errors"],
                            "gw_cpu_us": g["cpu_us_per_req"]["gateway"],
                            "loadavg": g["loadavg"],
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
        if a.profile:
            profile_text = profile(
                gw, targets["gateway"], bodies[False], side_cpu, duration=max(duration, 8)
            )
        for b in bodies.values():
            os.unlink(b)

    md = table(
        rows,
        [
            ("surface", "surface"),
            ("conns", "conns"),
            ("load", "load"),
            ("direct_rps", "direct req/s"),
            ("gw_rps", "gateway req/s"),
            ("rps_ratio", "gw/direct"),
            ("direct_p50", "direct p50 ms"),
            ("gw_p50", "gw p50 ms"),
            ("added_p50", "added p50 ms"),
            ("direct_p99", "direct p99 ms"),
            ("gw_p99", "gw p99 ms"),
            ("added_p99", "added p99 ms"),
            ("gw_errors", "gw errors"),
            ("gw_cpu_us", "gw CPU µs/req"),
            ("loadavg", "load avg"),
        ],
        digits=2,
    )
    print(md)
    pinning = "none" if gw_cpu is None else "gateway on CPU 0; upstream + load generator on CPU 1"
    path = write_results(
        "gateway",
        "overhead",
        {
            "pinning": pinning,
            "duration_s": duration,
            "warmup_s": warmup,
            "rows": rows,
            "raw": raw,
            "profile_top": profile_text,
        },
        md,
    )
    if profile_text:
        (RESULTS / "profile_top.txt").write_text(profile_text + "\n")
        print(profile_text)
    print(f"results: {path.relative_to(ROOT)}")


def profile(
    gw: Gateway, target: tuple[str, list[str]], body: str, cpus: str | None, duration: float
) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return "py-spy not installed: pip install py-spy==0.4.1"
    out = Path(tempfile.mkdtemp(prefix="bench-pyspy-")) / "gateway.txt"
    rec = subprocess.Popen(
        pinned(
            [
                spy,
                "record",
                "--pid",
                str(gw.pid),
                "--format",
                "raw",
                "--rate",
                "250",
                "--duration",
                str(int(duration)),
                "--nonblocking",
                "-o",
                str(out),
            ],
            cpus,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    load(target[0], body, target[1], 50, duration, 0.5, 0.0, cpus)
    rec.wait(timeout=120)
    if not out.exists():
        return "py-spy produced no output (ptrace not permitted?)"
    shutil.copy(out, RESULTS / "profile_gateway_collapsed.txt")
    return summarize_profile(out)


if __name__ == "__main__":
    main()
