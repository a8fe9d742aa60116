"""Speech-to-text on the GPU: faster-whisper through modelport (worker, and gateway -> worker)
vs the same model called in-process, at 1, 4 and 16 concurrent clients.

Model: a random-weight whisper of a real shape (default large-v2, 1.5 B parameters) converted to
CTranslate2 float16 on the machine (bench/gpu/media_models.py). Clip: assets/speech.flac, 36 s of
espeak-ng speech. Every path decodes with the same settings: beam 5, language "en", temperature 0
with the fallback thresholds off (random weights would otherwise trigger random re-decodes), so
each request does the same work. Figure: real-time factor, audio seconds transcribed per wall
second over the whole run (higher is better), and request latency.

    python bench/gpu/whisper.py [--shape large-v2] [--device cuda] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
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
from bench.gpu.media_models import build_whisper

CLIP = Path(__file__).resolve().parent / "assets" / "speech.flac"
# Same decoding on every path: what the request asks for plus the launch's engine options.
DECODE = {"beam_size": 5, "compression_ratio_threshold": None, "log_prob_threshold": None}


def spec(path: Path, device: str, workers: int) -> dict[str, Any]:
    return {
        "uid": "whisper",
        "model_name": "whisper-bench",
        "model_type": "audio",
        "engine": "faster_whisper",
        "model_format": "ct2",
        "model_path": str(path),
        "device": device,
        "abilities": ["audio2text"],
        "engine_options": {**DECODE, "num_workers": workers},
    }


def in_process(path: Path, device: str, conc: int, duration: float) -> dict[str, Any]:
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio

    model = WhisperModel(
        str(path),
        device=device,
        compute_type="float16" if device == "cuda" else "int8",
        num_workers=conc,
    )

    def one() -> bool:
        # as the engine does: decode the file, transcribe, read every segment
        audio = decode_audio(str(CLIP), sampling_rate=16000)
        segments, _ = model.transcribe(audio, language="en", temperature=0.0, **DECODE)
        return bool(list(segments) is not None)

    one()  # warm-up
    return run_clients(conc, duration, one)


def over_http(url: str, headers: dict[str, str], conc: int, duration: float) -> dict[str, Any]:
    import httpx

    data = CLIP.read_bytes()
    http = httpx.Client(timeout=600, headers=headers, limits=httpx.Limits(max_connections=64))

    def one() -> bool:
        r = http.post(
            url,
            files={"file": ("speech.flac", data, "audio/flac")},
            data={"model": "whisper", "language": "en", "temperature": "0"},
        )
        return r.status_code == 200

    one()
    try:
        return run_clients(conc, duration, one)
    finally:
        http.close()


def row(path: str, conc: int, r: dict[str, Any], audio_s: float) -> dict[str, Any]:
    stats = row_stats(r)
    return {"path": path, "clients": conc, **stats, "rtf": stats["per_s"] * audio_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="large-v2")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    from faster_whisper.audio import decode_audio

    audio_s = len(decode_audio(str(CLIP), sampling_rate=16000)) / 16000
    t0 = time.perf_counter()
    quant = "float16" if args.device == "cuda" else "int8"
    path = build_whisper(args.shape, Path(tempfile.mkdtemp(prefix="mp-whisper-")) / "m", quant)
    print(f"built {args.shape} in {time.perf_counter() - t0:.0f} s", flush=True)
    duration = 10.0 if args.quick else 30.0
    concs = [int(c) for c in args.concurrency.split(",")]
    rows: list[dict[str, Any]] = []
    for conc in concs:
        rows.append(row("in-process", conc, in_process(path, args.device, conc, duration), audio_s))
        print(rows[-1], flush=True)
    worker, w_url = start_worker(spec(path, args.device, max(concs)))
    gw, gw_url = start_gateway()
    try:
        key = gateway_route(gw_url, f"{w_url}/v1", ["whisper"])
        for conc in concs:
            r = over_http(f"{w_url}/v1/audio/transcriptions", {}, conc, duration)
            rows.append(row("worker", conc, r, audio_s))
            print(rows[-1], flush=True)
            auth = {"Authorization": f"Bearer {key}"}
            r = over_http(f"{gw_url}/v1/audio/transcriptions", auth, conc, duration)
            rows.append(row("gateway -> worker", conc, r, audio_s))
            print(rows[-1], flush=True)
    finally:
        gw.stop()
        worker.stop()
    direct = {r["clients"]: r["rtf"] for r in rows if r["path"] == "in-process"}
    for r in rows:
        r["ratio"] = r["rtf"] / direct[r["clients"]] if direct.get(r["clients"]) else None
    print(f"\n### whisper {args.shape} ({quant}) on {gpu_name()}, clip {audio_s:.1f} s\n")
    print(table(rows, ["path", "clients", "requests", "errors", "rtf", "p50_s", "p99_s", "ratio"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps({"gpu": gpu_name(), "shape": args.shape, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
