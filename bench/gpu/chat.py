"""Chat on the GPU: the transformers engine through modelport (gateway -> worker) vs the same
engine called directly in-process, at 1, 8 and 32 concurrent streams; plus static batched
`generate` as the ceiling a batching engine could reach.

    python bench/gpu/chat.py [--shape qwen2.5-0.5b] [--device cuda] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu.harness import (
    gateway_route,
    gpu_name,
    load,
    median,
    start_gateway,
    start_worker,
    table,
)
from bench.gpu.tiny_llm import build, prompt_words

NEW_TOKENS = int(os.environ.get("BENCH_NEW_TOKENS", "128"))  # read by client processes too
PROMPT_WORDS = 128


def body(i: int, stream: bool = True) -> dict[str, Any]:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": prompt_words(PROMPT_WORDS, i)}],
        "max_tokens": NEW_TOKENS,
        "temperature": 1.0,
        "stream": stream,
        "stream_options": {"include_usage": True},
    }


def spec(path: Path, device: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "uid": "chat",
        "model_name": path.name,
        "model_type": "llm",
        "engine": "transformers",
        "model_format": "pytorch",
        "model_path": str(path),
        "device": device,
        "abilities": ["chat"],
        "context_length": 32768,
        "engine_options": options,
    }


async def direct(
    path: Path, device: str, options: dict[str, Any], conc: int, duration: float
) -> dict[str, Any]:
    """The engine object itself, no HTTP: `conc` tasks streaming chat back to back."""
    from local_runtime.engines.transformers import TransformersEngine
    from local_runtime.spec import ResolvedSpec

    engine = TransformersEngine(ResolvedSpec(**spec(path, device, options)))
    await asyncio.to_thread(engine.load)
    ttfts: list[float] = []
    tokens = 0
    stop = time.perf_counter() + duration

    async def client(c: int) -> None:
        nonlocal tokens
        n = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            first = None
            it = await engine.chat(body(c * 10000 + n))
            async for frame in it:  # type: ignore[union-attr]
                for line in frame.split(b"\n"):
                    if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                        continue
                    obj = json.loads(line[5:])
                    delta = (obj.get("choices") or [{}])[0].get("delta") or {}
                    if first is None and delta.get("content"):
                        first = time.perf_counter()
                    if obj.get("usage"):
                        tokens += int(obj["usage"].get("completion_tokens") or 0)
            if first is not None:
                ttfts.append(first - t0)
            n += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(conc)))
    elapsed = time.perf_counter() - t0
    engine.unload()
    return {"tokens_per_s": tokens / elapsed, "ttft_p50_ms": median(ttfts) * 1000}


def static_batch(path: Path, device: str, batch: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16 if device == "cuda" else torch.float32
    ).to(device)
    ids = torch.randint(10, 4000, (batch, PROMPT_WORDS), device=device)
    mask = torch.ones_like(ids)
    kw = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": True}
    model.generate(
        input_ids=ids, attention_mask=mask, **{**kw, "max_new_tokens": 4, "min_new_tokens": 4}
    )
    t0 = time.perf_counter()
    model.generate(input_ids=ids, attention_mask=mask, **kw)
    if device == "cuda":
        torch.cuda.synchronize()
    rate = batch * NEW_TOKENS / (time.perf_counter() - t0)
    del model
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="qwen2.5-0.5b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    options = {"torch_dtype": dtype, "max_tokens": NEW_TOKENS}
    path = build(args.shape, Path(tempfile.mkdtemp(prefix="mp-chat-")), dtype)
    duration = 6 if args.quick else 15
    concs = [int(c) for c in args.concurrency.split(",")]
    rows: list[dict[str, Any]] = []
    gw, gw_url = start_gateway()
    worker, w_url = start_worker(spec(path, args.device, options))
    try:
        key = gateway_route(gw_url, f"{w_url}/v1", ["chat"])
        for conc in concs:
            via = load(
                f"{gw_url}/v1/chat/completions",
                "bench.gpu.chat:body",
                concurrency=conc,
                duration=duration,
                stream=True,
                headers={"Authorization": f"Bearer {key}"},
            )
            rows.append({"path": "gateway -> worker", "streams": conc, **_pick(via.row())})
    finally:
        worker.stop()
        gw.stop()
    for conc in concs:
        d = asyncio.run(direct(path, args.device, options, conc, duration))
        rows.append({"path": "engine in-process", "streams": conc, **d})
    for conc in concs:
        via = next(r for r in rows if r["path"] != "engine in-process" and r["streams"] == conc)
        d = next(r for r in rows if r["path"] == "engine in-process" and r["streams"] == conc)
        via["ratio"] = via["tokens_per_s"] / d["tokens_per_s"] if d["tokens_per_s"] else None
    ceiling = [{"batch": b, "tokens_per_s": static_batch(path, args.device, b)} for b in concs]
    print(f"\n### chat {args.shape} on {gpu_name()}\n")
    print(table(rows, ["path", "streams", "tokens_per_s", "ttft_p50_ms", "ratio"]))
    print("\nstatic batched generate (ceiling for a batching engine)\n")
    print(table(ceiling, ["batch", "tokens_per_s"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"gpu": gpu_name(), "shape": args.shape, "rows": rows, "static_batch": ceiling},
                indent=2,
            )
        )


def _pick(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "tokens_per_s": r["tokens_per_s"],
        "ttft_p50_ms": r["ttft_p50_ms"],
        "errors": r["errors"],
    }


if __name__ == "__main__":
    main()
