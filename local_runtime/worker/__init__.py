"""The worker process: one model replica behind an OpenAI-compatible HTTP API on loopback.

Each launched replica runs in its own process (crash isolation; unloading frees all memory; one
`CUDA_VISIBLE_DEVICES` per worker). The supervisor starts it, watches /health, and stops it.

Contract (the supervisor depends on it)
---------------------------------------
Start::

    python -m local_runtime.worker --spec SPEC.json --host 127.0.0.1 --port N
        [--engine-class pkg.module:Class] [--max-upload-bytes B] [--error-exit-grace S]

`SPEC.json` holds a `local_runtime.spec.ResolvedSpec`. The engine class is found by
`(spec.engine, spec.model_type)` among the modules of `local_runtime.engines` (aliases from
`spec.ENGINE_ALIASES` accepted), unless `--engine-class` names one.

- The HTTP server (uvicorn, one process, uvloop + httptools) listens at once; the model loads in
  a background thread, so /health answers while it loads.
- `GET /health` always answers 200 with JSON::

      {"status": "loading" | "ready" | "error" | "stopping", "uid", "engine", "model_type",
       "capabilities": [...], "pid", "rss_bytes", "uptime_s", "load_seconds", "inflight",
       "error"?: "failed to load 'uid': ExcType: message", ...engine.status()}

- A request before ready gets 503 `{"error": {"message", "type", "param", "code":
  "model_not_ready"}}` with `Retry-After: 1`; after a failed load, 503 with code "load_failed".
- Load failure: status "error" with the message in /health; the message is also printed to
  stderr as one line starting `modelport-worker: `; the process then exits with status 3 after
  `--error-exit-grace` seconds (default 10) so the supervisor can read /health first.
- SIGTERM (or SIGINT): stop accepting, finish in-flight requests briefly, `engine.unload()`,
  exit 0.
- Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/rerank,
  /v1/audio/transcriptions, /v1/audio/translations (multipart, `file` field, limit
  `--max-upload-bytes` or env MODELPORT_MAX_UPLOAD_BYTES, default 25 MiB, else 413),
  /v1/images/generations (b64_json, or url: PNG written to
  `$MODELPORT_FILES_DIR/images/<random>.png` and returned as
  `$MODELPORT_PUBLIC_URL/files/images/<random>.png`); GET /v1/models.
  A route whose capability the engine lacks answers 400 with code "unsupported_operation";
  unknown paths 404; all errors in OpenAI shape. The `model` field of requests is not checked
  (the gateway maps names); responses carry the UID.
- Streams are SSE `data: {...}\\n\\n` frames ending in `data: [DONE]\\n\\n`; with
  `stream_options.include_usage` the last chunk before [DONE] carries `usage`. An error after the
  first byte is sent as a `data: {"error": {...}}` frame.
- With MODELPORT_WORKER_SECRET in its environment (every supervisor sets one per launch:
  local_runtime.keys), every request, /health included, needs `Authorization: Bearer
  <key>`, else 401 with code "invalid_worker_key".
- Overload (an engine's queue bound) answers 429 with code "rate_limit_exceeded" and
  `Retry-After: 1`.
- `engine_options.http_fronts: N` (embeddings and rerank engines): N HTTP front processes hold
  the port and feed this process, which loads the model and batches (local_runtime.worker.fronts);
  the contract above is unchanged, /health adds `fronts: [{index, pid, requests, restarts}]`, a
  killed front is restarted, and a worker whose fronts keep dying exits with status 4.
"""

from __future__ import annotations

from local_runtime.worker.app import WorkerSettings, WorkerState, create_app

__all__ = ["WorkerSettings", "WorkerState", "create_app"]
