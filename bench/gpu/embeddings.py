"""Embeddings on the GPU: modelport's worker (dynamic batching) vs in-process encode().

Models: random weights of the real architectures (throughput does not depend on the values):
MiniLM-L6 (hidden 384, 6 layers) and bge-base (hidden 768, 12 layers), with BERT's tokenizer.
In-process: SentenceTransformer.encode() over a fixed sentence list at several batch sizes (the
best is the ceiling). Worker: `python -m local_runtime.worker` with the sentence_transformers
engine, driven by 1, 32 and 256 concurrent clients each sending one sentence per request, with
batching on (max_batch_size 256) and off (max_batch_size 1). `--fronts 0,4` runs the batching
worker once per `http_fronts` value (0: one process; N: N HTTP front processes feeding the model
process, see local_runtime/worker/fronts.py), side by side in one run. `loop_us_per_request` is
the CPU time the model process's event loop (its main thread: HTTP without fronts, the fronts'
links with them; the model computes on other threads) spends per request, in µs: 10⁶ / it is the
request rate that process can sustain, whatever the load generator or the CPU box manages.
`fronts_us_per_request` is the CPU all fronts together spend per request: 10⁶ / it, times the
number of fronts, is the rate they can parse when each has a core.

    python bench/gpu/embeddings.py [--device cuda] [--quick] [--fronts 0,4]
        [--out results/embeddings.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu.harness import gpu_name, load, start_worker, table

ASSETS = Path(__file__).resolve().parent / "assets" / "bert-tokenizer"
SHAPES = {
    "minilm-l6": {
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
    },
    "bge-base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
}
WORDS = [
    "model",
    "gateway",
    "token",
    "request",
    "local",
    "vector",
    "search",
    "answer",
    "question",
    "document",
    "river",
    "mountain",
    "city",
    "light",
    "window",
    "music",
    "garden",
    "paper",
    "system",
    "network",
]


def sentence(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(12)) + f" {i}."


def body_one(i: int) -> dict[str, Any]:
    return {"model": "emb", "input": sentence(i)}


def body_sixteen(i: int) -> dict[str, Any]:
    """FastGPT-like: several chunks per request."""
    return {"model": "emb", "input": [sentence(i * 16 + k) for k in range(16)]}


def build(shape: str, root: Path) -> Path:
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    hf = root / f"{shape}-hf"
    cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, **SHAPES[shape])
    BertModel(cfg).save_pretrained(hf)
    for f in ASSETS.iterdir():
        shutil.copy(f, hf / f.name)
    st = root / shape
    word = models.Transformer(str(hf), max_seq_length=256)
    pool = models.Pooling(word.get_word_embedding_dimension(), "mean")
    SentenceTransformer(modules=[word, pool, models.Normalize()]).save(str(st))
    return st


def in_process(path: Path, device: str, quick: bool, dtype: str) -> list[dict[str, Any]]:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device=device)
    if dtype == "float16":
        model.half()
    n = 2048 if quick else 16384
    sents = [sentence(i) for i in range(n)]
    rows = []
    for bs in (1, 32, 256, 1024):
        count = min(n, 256) if bs == 1 else n
        model.encode(sents[: min(count, 2 * bs)], batch_size=bs)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.encode(sents[:count], batch_size=bs)
        if device == "cuda":
            torch.cuda.synchronize()
        rows.append({"batch": bs, "sentences_per_s": count / (time.perf_counter() - t0)})
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def cpu_s(pid: int, task: int | None = None) -> float:
    """utime + stime of a process (all its threads), or of one of its threads."""
    path = f"/proc/{pid}/task/{task}/stat" if task is not None else f"/proc/{pid}/stat"
    stat = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def worker_cpu(pid: int, url: str) -> tuple[float, float, int]:
    """CPU seconds of the worker's main thread and of its fronts so far; texts embedded."""
    with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
        health = json.loads(r.read())
    fronts = sum(cpu_s(front["pid"]) for front in health.get("fronts", []))
    return cpu_s(pid, pid), fronts, int(health["batching"]["items_run"])


def through_worker(
    path: Path,
    device: str,
    quick: bool,
    batch: int,
    dtype: str,
    fronts: int = 0,
    client_procs: int = 0,
) -> list[dict[str, Any]]:
    spec = {
        "uid": "emb",
        "model_name": path.name,
        "model_type": "embedding",
        "engine": "sentence_transformers",
        "model_format": "pytorch",
        "model_path": str(path),
        "device": device,
        "engine_options": {
            "max_batch_size": batch,
            "max_wait_ms": 2,
            "max_queue": 100000,
            "dtype": dtype,
            "http_fronts": fronts,
        },
    }
    proc, url = start_worker(spec)
    rows = []
    cases = [(1, 1), (32, 1), (256, 1), (256, 16)] if batch > 1 else [(256, 1)]
    try:
        for conc, per_request in cases:
            ref = "bench.gpu.embeddings:" + ("body_one" if per_request == 1 else "body_sixteen")
            loop, front, items = worker_cpu(proc.p.pid, url)
            res = load(
                f"{url}/v1/embeddings",
                ref,
                concurrency=conc,
                duration=3 if quick else 8,
                procs=client_procs,
            )
            loop_after, front_after, items_after = worker_cpu(proc.p.pid, url)
            served = (items_after - items) / per_request or float("nan")
            r = res.row()
            rows.append(
                {
                    "clients": conc,
                    "texts_per_request": per_request,
                    "batching": batch > 1,
                    "fronts": fronts,
                    "sentences_per_s": r["rps"] * per_request,
                    "p50_ms": r["p50_ms"],
                    "p99_ms": r["p99_ms"],
                    "loop_us_per_request": 1e6 * (loop_after - loop) / served,
                    "fronts_us_per_request": 1e6 * (front_after - front) / served
                    if fronts
                    else None,
                    "errors": r["errors"],
                }
            )
    finally:
        proc.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shapes", default="minilm-l6,bge-base")
    ap.add_argument("--dtype", default="float32", help="float16 needs engine support")
    ap.add_argument(
        "--fronts", default="0", help="http_fronts values to compare, comma-separated (0,4)"
    )
    ap.add_argument(
        "--client-procs",
        type=int,
        default=0,
        help="load-generator processes (default: a quarter of the cores, at most 8)",
    )
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    out: dict[str, Any] = {
        "gpu": gpu_name(),
        "device": args.device,
        "dtype": args.dtype,
        "results": {},
    }
    root = Path(tempfile.mkdtemp(prefix="mp-emb-"))
    for shape in args.shapes.split(","):
        path = build(shape, root)
        inproc = in_process(path, args.device, args.quick, args.dtype)
        best = max(r["sentences_per_s"] for r in inproc)
        worker = []
        for fronts in (int(n) for n in args.fronts.split(",")):
            worker += through_worker(
                path, args.device, args.quick, 256, args.dtype, fronts, args.client_procs
            )
        worker += through_worker(path, args.device, args.quick, 1, args.dtype)
        for r in worker:
            r["ratio_to_best_in_process"] = r["sentences_per_s"] / best
        out["results"][shape] = {"in_process": inproc, "worker": worker}
        print(f"\n### {shape} on {out['gpu']}\n")
        print(table(inproc, ["batch", "sentences_per_s"]))
        print()
        print(
            table(
                worker,
                [
                    "clients",
                    "texts_per_request",
                    "batching",
                    "fronts",
                    "sentences_per_s",
                    "p50_ms",
                    "p99_ms",
                    "ratio_to_best_in_process",
                    "loop_us_per_request",
                    "fronts_us_per_request",
                    "errors",
                ],
            )
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
