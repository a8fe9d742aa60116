"""Issue 17: modelport side by side with its peers, in one run, as one table of ratios.

    bash bench/compare/setup_peers.sh            # once: LiteLLM's proxy and Xinference, own venvs
    python bench/compare/compare.py [--quick] [--skip-runtime]

Gateway part (same upstream, same load generator, same request):
- the near-zero-cost upstream of bench/gateway (canned chat completion / SSE stream), alone;
- modelport as users run it: `modelport serve` with its defaults (access log on, SQLite, usage rows
  written, an unlimited sk- token), one worker and `--workers 2`;
- LiteLLM's proxy (`litellm --config ... --num_workers 1`, a master key, no database) from
  $LITELLM_VENV, the same model mapped to the same upstream.
For each: closed-loop req/s at 50 connections (non-stream, stream), gateway CPU µs per request,
and the latency added at one connection (paced, p50 over the direct upstream's).

Runtime part: bench/runtime/embeddings.py and chat.py (modelport worker and gateway vs Xinference
vs the engine in-process, interleaved rounds), whose results it reads back.

Pinning: one-worker gateways get CPU 0, the upstream and the load generator CPU 1; `--workers 2`
gets both CPUs (sharing CPU 1 with the load generator), so its ratio to one worker is a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common.gateway_proc import Gateway
from bench.common.procs import ROOT, Proc, cpu_seconds, exit_on_sigterm, free_port, python_cmd
from bench.common.report import table, write_results
from bench.gateway.overhead import MODEL, body_file, load

LITELLM_VENV = Path(os.environ.get("LITELLM_VENV", "/work/litellm-venv"))
MASTER_KEY = "sk-bench-master"


def litellm_proxy(up_port: int, cpus: str | None) -> tuple[Proc, str]:
    port = free_port()
    cfg = Path(tempfile.mkstemp(prefix="litellm-", suffix=".yaml")[1])
    cfg.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": f"http://127.0.0.1:{up_port}/v1",
                            "api_key": "sk-upstream",
                        },
                    }
                ],
                "general_settings": {"master_key": MASTER_KEY},
            }
        )
    )
    cmd = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(cfg), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--num_workers", "1"]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    return Proc(cmd, name="litellm", cpus=cpus, env=env), f"http://127.0.0.1:{port}"


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live descendants (uvicorn's worker processes under `--workers`)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu_seconds(p)
        todo += children.get(p, [])
    return total


def version_of(python: Path, dist: str) -> str:
    if not python.exists():
        return "not installed"
    out = subprocess.run(
        [str(python), "-c", f"from importlib.metadata import version; print(version('{dist}'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def measure(
    name: str,
    url: str,
    headers: list[str],
    proc: Proc | None,
    bodies: dict[bool, str],
    side_cpu: str | None,
    duration: float,
    warmup: float,
) -> dict[str, Any]:
    """Closed loop at 50 connections (both shapes), then paced at one connection."""
    row: dict[str, Any] = {"system": name}
    for stream in (False, True):
        check = httpx.post(
            url,
            content=Path(bodies[stream]).read_bytes(),
            headers=dict(h.split(": ", 1) for h in headers) | {"content-type": "application/json"},
            timeout=120,
        )
        answered = b"Paris" in check.content or (stream and b"data:" in check.content)
        if check.status_code != 200 or not answered:
            tail = proc.tail() if proc else ""
            raise SystemExit(
                f"{name} does not answer (stream={stream}): {check.text[:500]}\n{tail}"
            )
        before = tree_cpu_seconds(proc.pid) if proc else 0.0
        r = load(url, bodies[stream], headers, 50, duration, warmup, 0, side_cpu)
        key = "stream" if stream else "nonstream"
        row[f"{key}_rps"] = r["rps"]
        row[f"{key}_errors"] = r["errors"]
        if proc:
            n = max(1, r["requests"]) * (duration + warmup) / duration
            row[f"{key}_cpu_us"] = (tree_cpu_seconds(proc.pid) - before) / n * 1e6
    # paced below capacity, so the latency is service time, not queueing
    rate = max(1.0, min(20.0, row["nonstream_rps"] / 2))
    paced = load(url, bodies[False], headers, 1, duration, warmup, rate, side_cpu)
    row["p50_ms"] = paced["p50_ms"]
    row["paced_rate"] = rate
    return row


def gateway_rows(quick: bool) -> list[dict[str, Any]]:
    duration, warmup = (3.0, 1.0) if quick else (10.0, 2.0)
    pin = (os.cpu_count() or 1) >= 2
    gw_cpu, side_cpu = ("0", "1") if pin else (None, None)
    up_port = free_port()
    upstream = Proc(
        python_cmd(str(ROOT / "bench" / "gateway" / "upstream.py"), str(up_port)),
        name="upstream",
        cpus=side_cpu,
    )
    bodies = {False: body_file(False), True: body_file(True)}
    rows: list[dict[str, Any]] = []
    try:
        with upstream:
            time.sleep(0.3)
            direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
            rows.append(
                measure("upstream alone", direct, [], None, bodies, side_cpu, duration, warmup)
            )
            for workers, cpus in ((1, gw_cpu), (2, None)):
                with Gateway(cpus=cpus, workers=workers) as gw:
                    gw.add_channel("bench-upstream", f"http://127.0.0.1:{up_port}/v1", [MODEL])
                    key = gw.create_token()
                    name = f"modelport serve --workers {workers}"
                    url = f"{gw.url}/v1/chat/completions"
                    auth = [f"Authorization: Bearer {key}"]
                    rows.append(
                        measure(name, url, auth, gw.proc, bodies, side_cpu, duration, warmup)
                    )
            if (LITELLM_VENV / "bin" / "litellm").exists():
                proxy, base = litellm_proxy(up_port, gw_cpu)
                with proxy:
                    proxy.wait_http(base + "/health/liveliness", limit_s=180)
                    auth = [f"Authorization: Bearer {MASTER_KEY}"]
                    url = f"{base}/v1/chat/completions"
                    rows.append(
                        measure(
                            "LiteLLM proxy, 1 worker",
                            url,
                            auth,
                            proxy,
                            bodies,
                            side_cpu,
                            duration,
                            warmup,
                        )
                    )
            else:
                print(f"LiteLLM not found in {LITELLM_VENV}: run bench/compare/setup_peers.sh")
    finally:
        for b in bodies.values():
            os.unlink(b)
    direct_p50 = rows[0]["p50_ms"]
    one = rows[1]
    for r in rows[1:]:
        r["added_p50_ms"] = r["p50_ms"] - direct_p50
        r["vs_modelport_1w"] = r["nonstream_rps"] / one["nonstream_rps"]
    return rows


def runtime_rows(quick: bool) -> list[dict[str, Any]]:
    """Runs the runtime benchmarks (each writes bench/runtime/results/<name>.json) and keeps the
    rows the issue's goals are about."""
    out: list[dict[str, Any]] = []
    for script, keep in (
        ("embeddings", lambda r: r.get("clients") in (32, 256, "-")),
        ("chat", lambda r: r.get("streams") in (1, 4)),
    ):
        cmd = python_cmd(str(ROOT / "bench" / "runtime" / f"{script}.py"))
        if quick:
            cmd.append("--quick")
        subprocess.run(cmd, cwd=ROOT, check=True)
        doc = json.loads((ROOT / "bench" / "runtime" / "results" / f"{script}.json").read_text())
        for r in doc["rows"]:
            if keep(r):
                out.append({"benchmark": script, **r})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="3 s cells; runtime benches --quick")
    ap.add_argument("--skip-runtime", action="store_true", help="gateway part only")
    a = ap.parse_args()
    exit_on_sigterm()
    gw = gateway_rows(a.quick)
    gw_md = table(
        gw,
        [
            ("system", "system"),
            ("nonstream_rps", "non-stream req/s (50 conns)"),
            ("vs_modelport_1w", "vs modelport 1 worker"),
            ("nonstream_cpu_us", "CPU µs/req"),
            ("stream_rps", "streams/s (50 conns)"),
            ("stream_cpu_us", "CPU µs/stream"),
            ("paced_rate", "paced req/s (1 conn)"),
            ("p50_ms", "p50 ms (1 conn)"),
            ("added_p50_ms", "added p50 ms"),
            ("nonstream_errors", "errors"),
        ],
        digits=2,
    )
    print(gw_md)
    rt: list[dict[str, Any]] = [] if a.skip_runtime else runtime_rows(a.quick)
    rt_md = ""
    if rt:
        rt_md = table(
            rt,
            [
                ("benchmark", "benchmark"),
                ("system", "system"),
                ("clients", "clients"),
                ("streams", "streams"),
                ("sentences_per_s", "sentences/s"),
                ("aggregate_tps", "tokens/s"),
                ("ttft_p50_ms", "TTFT p50 ms"),
                ("vs_in_process", "vs in-process"),
                ("vs_xinference", "vs Xinference"),
            ],
            digits=2,
        )
        print(rt_md)
    versions = {
        "litellm": version_of(LITELLM_VENV / "bin" / "python", "litellm"),
        "xinference": version_of(
            Path(os.environ.get("XINF_VENV", "/work/xinf-venv")) / "bin" / "python", "xinference"
        ),
    }
    md = gw_md + ("\n\n" + rt_md if rt_md else "")
    write_results("compare", "compare", {"versions": versions, "gateway": gw, "runtime": rt}, md)


if __name__ == "__main__":
    main()
