"""Gateway overhead at GPU token rates: a worker streaming fast (the `fake` engine with a fixed
gap between tokens, as a GPU engine would) measured directly and through the gateway, side by
side: time to first token and the inter-token gap the client sees.

    python bench/gpu/overhead.py [--gap-ms 2] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.gpu.harness import gateway_route, gpu_name, load, start_gateway, start_worker, table

TOKENS = 128


def body(i: int) -> dict[str, Any]:
    words = " ".join(f"t{(i + k) % 97}" for k in range(TOKENS))
    return {
        "model": "fast",
        "messages": [{"role": "user", "content": words}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gap-ms", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--concurrency", default="1,32,128")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    spec = {
        "uid": "fast",
        "model_name": "fake",
        "model_type": "llm",
        "engine": "fake",
        "model_format": "none",
        "model_path": "/nonexistent",
        "engine_options": {"token_delay_s": args.gap_ms / 1000},
    }
    worker, w_url = start_worker(spec)
    gw, gw_url = start_gateway()
    rows: list[dict[str, Any]] = []
    try:
        key = gateway_route(gw_url, f"{w_url}/v1", ["fast"])
        for conc in (int(c) for c in args.concurrency.split(",")):
            pair = {}
            for path, url, headers in (
                ("direct", f"{w_url}/v1/chat/completions", None),
                ("gateway", f"{gw_url}/v1/chat/completions", {"Authorization": f"Bearer {key}"}),
            ):
                r = load(
                    url,
                    "bench.gpu.overhead:body",
                    concurrency=conc,
                    stream=True,
                    duration=4 if args.quick else 10,
                    headers=headers,
                ).row()
                pair[path] = r
                rows.append(
                    {
                        "path": path,
                        "streams": conc,
                        "ttft_p50_ms": r["ttft_p50_ms"],
                        "ttft_p99_ms": r["ttft_p99_ms"],
                        "gap_p50_ms": r["gap_p50_ms"],
                        "gap_p99_ms": r["gap_p99_ms"],
                        "tokens_per_s": r["tokens_per_s"],
                        "errors": r["errors"],
                    }
                )
            rows.append(
                {
                    "path": "added by gateway",
                    "streams": conc,
                    **{
                        k: pair["gateway"][k] - pair["direct"][k]
                        for k in ("ttft_p50_ms", "ttft_p99_ms", "gap_p50_ms", "gap_p99_ms")
                    },
                    "tokens_per_s": pair["gateway"]["tokens_per_s"]
                    / max(pair["direct"]["tokens_per_s"], 1e-9),
                }
            )
    finally:
        gw.stop()
        worker.stop()
    print(f"\n### gateway overhead, {args.gap_ms} ms token gap, on {gpu_name()}\n")
    print(
        table(
            rows,
            [
                "path",
                "streams",
                "ttft_p50_ms",
                "ttft_p99_ms",
                "gap_p50_ms",
                "gap_p99_ms",
                "tokens_per_s",
                "errors",
            ],
        )
    )
    print("\n(in the 'added by gateway' rows, tokens_per_s is the ratio gateway / direct)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"gpu": gpu_name(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
