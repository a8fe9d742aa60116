"""Issue 4, text-to-image: images per second for the tiny diffusers pipeline that
tests/support/tiny_models.py builds (random weights, 64x64, 4 steps, CPU float32), side by side:

- in-process: `DiffusionPipeline.from_pretrained(...)(prompt, ...)` in a loop;
- modelport worker process (engine diffusers), POST /v1/images/generations (b64_json);
- modelport gateway -> supervisor -> worker (POST /v1/models, sk- token) when --gateway.

1 and 4 concurrent clients; the worker runs once with max_batch_images 1 (one request per pipeline
call: 4 clients measure queueing and the HTTP/PNG/base64 cost around each job) and once with 4
(waiting requests share a call).

    python bench/runtime/images.py [--quick] [--gateway]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp

from bench.common.procs import ROOT, exit_on_sigterm, pinned, python_cmd, set_threads
from bench.common.report import table, write_results

STEPS, SIZE = 4, 64
CLIENTS = (1, 4)


def in_process(path: str, n_images: int) -> dict[str, Any]:
    code = f"""
import json, time, io, torch
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({path!r}, local_files_only=True)
pipe.set_progress_bar_config(disable=True)
def one(i):
    g = torch.Generator("cpu").manual_seed(i)
    img = pipe("a red apple on a table", width={SIZE}, height={SIZE},
               num_inference_steps={STEPS}, generator=g).images[0]
    buf = io.BytesIO(); img.save(buf, format="PNG")
one(0)
t0 = time.perf_counter()
for i in range({n_images}):
    one(i)
print(json.dumps({{"images_per_s": {n_images} / (time.perf_counter() - t0)}}))
"""
    out = subprocess.run(
        pinned(python_cmd("-c", code), None), cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def over_http(
    url: str, model: str, n_images: int, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    body = {
        "model": model,
        "prompt": "a red apple on a table",
        "size": f"{SIZE}x{SIZE}",
        "num_inference_steps": STEPS,
        "response_format": "b64_json",
        "n": 1,
    }
    rows = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as s:

        async def one(seed: int) -> None:
            async with s.post(
                url + "/images/generations", json={**body, "seed": seed}, headers=headers or {}
            ) as r:
                text = await r.text()
                if r.status != 200:
                    raise RuntimeError(f"{r.status}: {text[:300]}")

        await one(0)
        for clients in CLIENTS:
            per = max(1, n_images // clients)
            t0 = time.perf_counter()

            async def client(c: int, per: int = per) -> None:
                for i in range(per):
                    await one(c * 1000 + i)

            await asyncio.gather(*(client(c) for c in range(clients)))
            rows.append(
                {"clients": clients, "images_per_s": per * clients / (time.perf_counter() - t0)}
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--gateway", action="store_true")
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
    n_images = 12 if a.quick else 40
    from bench.common.runtime import Gateway, launch, worker
    from tests.support.tiny_models import build_tiny_sd

    path = str(build_tiny_sd(Path(tempfile.mkdtemp(prefix="bench-sd-")) / "tiny-sd"))
    rows: list[dict[str, Any]] = []
    ip = in_process(path, n_images)
    rows.append({"system": "in-process diffusers", "clients": 1, **ip})
    print(json.dumps(rows[-1]), flush=True)
    spec = {
        "uid": "tiny-sd",
        "model_name": "tiny-sd",
        "model_type": "image",
        "engine": "diffusers",
        "model_format": "diffusers",
        "model_path": path,
    }
    for batch in (1, 4):  # max_batch_images: 1 is the CPU default, 4 lets 4 clients share calls
        w = worker({**spec, "engine_options": {"max_batch_images": batch}})
        try:
            for r in asyncio.run(over_http(w.url, "tiny-sd", n_images)):  # type: ignore[attr-defined]
                rows.append({"system": f"modelport worker, max_batch_images {batch}", **r})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            w.stop()
    if a.gateway:
        with Gateway(runtime=True) as gw:
            launch(
                gw,
                {
                    "model_name": "sd-turbo",  # a catalog family; the files are the tiny pipeline
                    "model_uid": "tiny-sd",
                    "model_type": "image",
                    "model_engine": "diffusers",
                    "model_format": "diffusers",
                    "model_path": path,
                },
            )
            key = gw.create_token()
            for r in asyncio.run(
                over_http(gw.url + "/v1", "tiny-sd", n_images, {"Authorization": f"Bearer {key}"})
            ):
                rows.append({"system": "modelport gateway -> worker", **r})
                print(json.dumps(rows[-1]), flush=True)
    for r in rows:
        r["vs_in_process"] = r["images_per_s"] / ip["images_per_s"]
    md = table(
        rows,
        [
            ("system", "system"),
            ("clients", "clients"),
            ("images_per_s", "images/s"),
            ("vs_in_process", "× in-process"),
        ],
        digits=2,
    )
    print(md)
    path_out = write_results(
        "runtime", "images", {"steps": STEPS, "size": SIZE, "n_images": n_images, "rows": rows}, md
    )
    print(f"results: {path_out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
