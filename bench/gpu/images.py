"""Text-to-image on the GPU: the diffusers engine through modelport (worker, and gateway ->
worker) vs the same pipeline called in-process, at 1 and 4 concurrent clients.

Model: a random-weight Stable Diffusion 1.5-shaped pipeline (bench/gpu/media_models.py), float16,
512x512, 25 DDIM steps, one image per request. In-process does what a user's own script would:
`pipe(prompt, ...)` then PNG-encode the image; the worker also base64-encodes it into JSON
(`response_format=b64_json`). Figure: images/s and latency; ratio = through modelport / in-process
one call per image. The worker runs once per `--batch-images` value (waiting requests of one shape
share a pipeline call up to that many images); one `pipe()` call for N prompts in-process is the
batching ceiling.

    python bench/gpu/images.py [--device cuda] [--quick] [--size 512] [--steps 25]
        [--concurrency 1,4] [--batch-images 1,8] [--out FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu.harness import (
    gateway_route,
    gpu_name,
    row_stats,
    run_clients,
    start_gateway,
    start_worker,
    table,
)
from bench.gpu.media_models import build_sd15

PROMPT = "a lighthouse on a cliff at sunset, oil painting"


def spec(path: Path, device: str, steps: int, batch_images: int) -> dict[str, Any]:
    return {
        "uid": "sd",
        "model_name": "sd-bench",
        "model_type": "image",
        "engine": "diffusers",
        "model_format": "diffusers",
        "model_path": str(path),
        "device": device,
        "abilities": ["text2image"],
        "engine_options": {"default_steps": steps, "max_batch_images": batch_images},
    }


def load_pipe(path: Path, device: str) -> Any:
    import torch
    from diffusers import DiffusionPipeline

    dtype = torch.float16 if device == "cuda" else torch.float32
    return DiffusionPipeline.from_pretrained(str(path), torch_dtype=dtype).to(device)


def in_process(pipe: Any, size: int, steps: int, conc: int, duration: float) -> Any:
    import threading

    import torch

    lock = threading.Lock()  # a pipeline is not safe from two threads (the engine holds one too)

    def one() -> bool:
        with lock, torch.inference_mode():
            image = pipe(PROMPT, width=size, height=size, num_inference_steps=steps).images[0]
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return bool(buf.tell())

    one()
    return run_clients(conc, duration, one)


def batched_ceiling(pipe: Any, size: int, steps: int, batch: int) -> float:
    """Images/s of one `pipe()` call for `batch` prompts: what batching can reach at best."""
    import torch

    def call() -> None:
        with torch.inference_mode():
            pipe([PROMPT] * batch, width=size, height=size, num_inference_steps=steps)

    call()
    t0 = time.perf_counter()
    call()
    return batch / (time.perf_counter() - t0)


def over_http(url: str, headers: dict[str, str], size: int, conc: int, duration: float) -> Any:
    import httpx

    http = httpx.Client(timeout=600, headers=headers)
    body = {
        "model": "sd",
        "prompt": PROMPT,
        "size": f"{size}x{size}",
        "response_format": "b64_json",
    }

    def one() -> bool:
        r = http.post(url, json=body)
        return r.status_code == 200 and bool(r.json()["data"][0]["b64_json"])

    one()
    try:
        return run_clients(conc, duration, one)
    finally:
        http.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument(
        "--batch-images",
        default="8",
        help="the worker's max_batch_images, comma-separated to compare (1 = a call per request; "
        "8 is the CUDA default)",
    )
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    t0 = time.perf_counter()
    path = build_sd15(Path(tempfile.mkdtemp(prefix="mp-sd-")) / "sd15")
    print(f"built the pipeline in {time.perf_counter() - t0:.0f} s", flush=True)
    duration = 15.0 if args.quick else 30.0
    concs = [int(c) for c in args.concurrency.split(",")]
    rows: list[dict[str, Any]] = []
    pipe = load_pipe(path, args.device)
    for conc in concs:
        r = in_process(pipe, args.size, args.steps, conc, duration)
        rows.append({"path": "in-process", "clients": conc, **row_stats(r)})
        print(rows[-1], flush=True)
    ceiling = [
        {"batch": b, "per_s": batched_ceiling(pipe, args.size, args.steps, b)} for b in concs
    ]
    print(ceiling, flush=True)
    del pipe
    _free_gpu()
    for batch in (int(b) for b in args.batch_images.split(",")):
        worker, w_url = start_worker(spec(path, args.device, args.steps, batch))
        gw, gw_url = start_gateway()
        try:
            key = gateway_route(gw_url, f"{w_url}/v1", ["sd"])
            for conc in concs:
                r = over_http(f"{w_url}/v1/images/generations", {}, args.size, conc, duration)
                rows.append({"path": f"worker, batch {batch}", "clients": conc, **row_stats(r)})
                auth = {"Authorization": f"Bearer {key}"}
                r = over_http(f"{gw_url}/v1/images/generations", auth, args.size, conc, duration)
                rows.append(
                    {"path": f"gateway -> worker, batch {batch}", "clients": conc, **row_stats(r)}
                )
                print(rows[-2:], flush=True)
        finally:
            gw.stop()
            worker.stop()
    direct = {r["clients"]: r["per_s"] for r in rows if r["path"] == "in-process"}
    for r in rows:
        r["ratio"] = r["per_s"] / direct[r["clients"]] if direct.get(r["clients"]) else None
    print(f"\n### SD1.5 shape {args.size}px {args.steps} steps on {gpu_name()}\n")
    print(
        table(rows, ["path", "clients", "requests", "errors", "per_s", "p50_s", "p99_s", "ratio"])
    )
    print("\nin-process, one pipe() call for N prompts (the batching ceiling)\n")
    print(table(ceiling, ["batch", "per_s"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        out = {"gpu": gpu_name(), "rows": rows, "batched_ceiling": ceiling}
        Path(args.out).write_text(json.dumps(out, indent=2))


def _free_gpu() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
