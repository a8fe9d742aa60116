"""GGUF models through llama.cpp's own server code, bound in-process by `xllamacpp`.

Why xllamacpp and not llama-cpp-python: it embeds llama-server's request handling (the model's
chat template through jinja, tool-call and JSON-schema grammars, OpenAI request/response shapes,
usage counts) and its scheduler, which decodes `n_parallel` sequences together in one batch
(continuous batching). llama-cpp-python serialises requests and has no prebuilt CPU wheel.

How concurrent requests are served: each request is a blocking `handle_*` call made on a thread
of this engine's pool (the GIL is released inside); llama.cpp queues it as a task and assigns it
a free slot; all busy slots advance together, one token each per decode step. Requests beyond
`n_parallel` wait in llama.cpp's queue for a slot; beyond `max_queue` in-flight requests the
engine answers 429. Streamed tokens come back through a callback on that thread and are handed
to the event loop; a client that disconnects makes the callback return True, which cancels the
task and frees its slot. The KV cache is one unified pool of `n_ctx` tokens shared by the slots,
so one long conversation can use the whole context while short ones share it.

engine_options: n_parallel (4), n_ctx (spec.context_length capped at 32768, else 4096),
n_threads, n_threads_batch, n_batch, n_ubatch, n_gpu_layers, chat_template (jinja text),
model_file (which .gguf in a folder), mmproj (vision projector path), max_queue (256),
llama_params (dict: any other xllamacpp.CommonParams attribute, set as is).

The library also starts llama-server's HTTP listener on a random loopback port; we never use it
and protect it with a random API key so that nothing else on the machine can either.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import orjson

from local_runtime import sse
from local_runtime.batching import Overloaded
from local_runtime.engines import base
from local_runtime.engines.base import Engine, EngineError
from local_runtime.spec import FORMAT_ALIASES, ResolvedSpec

_DEFAULT_CTX = 4096
_MAX_DEFAULT_CTX = 32768
_ERROR_PREFIX = b'{"error"'
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.gguf$")
_FIRST_SHARD = re.compile(r"-00001-of-\d{5}\.gguf$")

Handler = Callable[[bytes, Callable[[bytes], bool]], None]


def find_gguf(
    model_path: str, quantization: str | None = None, model_file: str | None = None
) -> Path:
    """The .gguf file to load from a file path or a folder; the reason when there is none."""
    path = Path(model_path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no model at {model_path}")
    if model_file:
        chosen = path / model_file
        if not chosen.is_file():
            raise FileNotFoundError(f"{model_file} is not in {model_path}")
        return chosen
    # Split models (name-00001-of-00003.gguf) load from their first shard.
    files = [
        p
        for p in sorted(path.glob("*.gguf"))
        if not p.name.lower().startswith("mmproj")
        and (not _SHARD.search(p.name) or _FIRST_SHARD.search(p.name))
    ]
    if quantization and len(files) > 1:
        files = [p for p in files if quantization.lower() in p.name.lower()] or files
    if len(files) == 1:
        return files[0]
    if not files:
        raise FileNotFoundError(f"no .gguf file in {model_path}")
    names = ", ".join(p.name for p in files)
    raise ValueError(
        f"several .gguf files in {model_path} ({names}); set engine_options.model_file"
    )


def _engine_error(raw: bytes) -> EngineError:
    """llama-server's `{"error": {"code", "message", "type"}}` as an EngineError."""
    try:
        err = orjson.loads(raw)["error"]
        return EngineError(
            str(err.get("message", "llama.cpp error")),
            status=int(err.get("code", 500)),
            code=str(err.get("type", "llama_cpp_error")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return EngineError(raw.decode(errors="replace")[:500], status=500, code="llama_cpp_error")


def _call_error(exc: Exception) -> EngineError:
    # xllamacpp raises ValueError for llama.cpp's std::invalid_argument (a bad request).
    if isinstance(exc, ValueError):
        return EngineError(str(exc), status=400, code="invalid_request")
    return EngineError(f"llama.cpp failed: {exc}", status=500, code="llama_cpp_error")


class LlamaCppEngine(Engine):
    name: ClassVar[str] = "llama.cpp"
    model_types: ClassVar[frozenset[str]] = frozenset({"llm"})
    capabilities: ClassVar[frozenset[str]] = frozenset({base.CHAT, base.COMPLETIONS})
    requires: ClassVar[str] = "xllamacpp"

    def __init__(self, spec: ResolvedSpec) -> None:
        super().__init__(spec)
        options = spec.engine_options
        self.n_parallel = int(options.get("n_parallel", 4))
        self.max_queue = int(options.get("max_queue", 256))
        default_ctx = min(spec.context_length or _DEFAULT_CTX, _MAX_DEFAULT_CTX)
        self.n_ctx = int(options.get("n_ctx", default_ctx))
        self._server: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight = 0

    @classmethod
    def extra(cls) -> str:
        return "llama-cpp"

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        ok, reason = super().match(spec)
        if not ok:
            return ok, reason
        fmt = FORMAT_ALIASES.get(spec.model_format, spec.model_format)
        if fmt != "gguf":
            return False, f"llama.cpp serves only GGUF files; {spec.uid} is {spec.model_format}"
        return True, ""

    # --- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        import xllamacpp

        options = self.spec.engine_options
        params = xllamacpp.CommonParams()
        gguf = find_gguf(self.spec.model_path, self.spec.quantization, options.get("model_file"))
        params.model.path = str(gguf)
        if options.get("mmproj"):
            params.mmproj.path = str(options["mmproj"])
        params.model_alias = {self.spec.uid}  # responses then carry the UID as "model"
        params.n_parallel = self.n_parallel
        params.n_ctx = self.n_ctx
        params.kv_unified = bool(options.get("kv_unified", True))
        params.port = 0
        params.api_keys = [secrets.token_urlsafe(32)]
        params.verbosity = int(options.get("verbosity", -1))
        if self.spec.device == "cpu":
            params.n_gpu_layers = 0
        elif "n_gpu_layers" not in options:
            params.n_gpu_layers = 999
        for key in ("n_batch", "n_ubatch", "n_gpu_layers", "chat_template"):
            if key in options:
                setattr(params, key, options[key])
        if "n_threads" in options:
            params.cpuparams.n_threads = int(options["n_threads"])
        if "n_threads_batch" in options:
            params.cpuparams_batch.n_threads = int(options["n_threads_batch"])
        for key, value in (options.get("llama_params") or {}).items():
            if not hasattr(params, key):
                raise ValueError(f"llama_params: xllamacpp.CommonParams has no {key!r}")
            setattr(params, key, value)
        try:
            self._server = xllamacpp.Server(params)
        except RuntimeError as exc:
            raise RuntimeError(
                f"llama.cpp could not load {gguf} ({exc}); is it a valid GGUF for this build?"
            ) from exc
        # One thread per in-flight request: they spend their time blocked in C, GIL released.
        self._pool = ThreadPoolExecutor(
            max_workers=max(self.n_parallel * 2, 8), thread_name_prefix="llama"
        )

    def unload(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._server = None  # its destructor stops llama.cpp's loop and frees the model

    def status(self) -> dict[str, Any]:
        return {
            "n_parallel": self.n_parallel,
            "n_ctx": self.n_ctx,
            "requests_in_flight": self._inflight,
            "max_queue": self.max_queue,
        }

    # --- operations ------------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        if not isinstance(body.get("messages"), list):
            raise EngineError("'messages' must be a list of messages", code="messages")
        return await self._handle(self._server.handle_chat_completions, body)

    async def completions(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        if "prompt" not in body:
            raise EngineError("'prompt' is required", code="prompt")
        return await self._handle(self._server.handle_completions, body)

    async def _handle(
        self, handler: Handler, body: dict[str, Any]
    ) -> dict[str, Any] | AsyncIterator[bytes]:
        if self._inflight >= self.max_queue:
            raise Overloaded(
                f"{self.spec.uid} has {self._inflight} requests in flight "
                f"(limit {self.max_queue}); retry later"
            )
        body.pop("model", None)  # llama.cpp serves one model; the UID is set at load
        payload = orjson.dumps(body)
        if body.get("stream"):
            return await self._start_stream(handler, payload)
        self._inflight += 1
        try:
            raw = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._call, handler, payload
            )
        finally:
            self._inflight -= 1
        if raw.startswith(_ERROR_PREFIX):
            raise _engine_error(raw)
        return orjson.loads(raw)

    @staticmethod
    def _call(handler: Handler, payload: bytes) -> bytes:
        out: list[bytes] = []

        def keep(chunk: bytes) -> bool:
            out.append(chunk)
            return False

        try:
            handler(payload, keep)
        except (ValueError, RuntimeError) as exc:
            raise _call_error(exc) from exc
        if not out:
            raise EngineError("llama.cpp returned nothing", status=500, code="llama_cpp_error")
        return out[0]

    async def _start_stream(self, handler: Handler, payload: bytes) -> AsyncIterator[bytes]:
        """Start generating; wait for the first chunk so that an early error gets its status."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | EngineError | None] = asyncio.Queue()
        stop = threading.Event()

        def on_chunk(chunk: bytes) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return stop.is_set()

        def run() -> None:
            try:
                handler(payload, on_chunk)
            except (ValueError, RuntimeError) as exc:
                loop.call_soon_threadsafe(queue.put_nowait, _call_error(exc))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        self._inflight += 1
        loop.run_in_executor(self._pool, run)
        first = await queue.get()
        if first is None or isinstance(first, EngineError) or first.startswith(_ERROR_PREFIX):
            stop.set()
            self._inflight -= 1
            if isinstance(first, EngineError):
                raise first
            if first is None:
                raise EngineError("llama.cpp returned nothing", status=500, code="llama_cpp_error")
            raise _engine_error(first)
        return self._frames(first, queue, stop)

    async def _frames(
        self,
        first: bytes,
        queue: asyncio.Queue[bytes | EngineError | None],
        stop: threading.Event,
    ) -> AsyncIterator[bytes]:
        try:
            yield sse.frame(first)
            while (chunk := await queue.get()) is not None:
                if isinstance(chunk, EngineError):
                    yield sse.error_frame(chunk.message, code=chunk.code)
                    continue
                yield sse.frame(chunk)
            yield sse.DONE
        finally:
            stop.set()  # the client went away (or we finished): let llama.cpp free the slot
            self._inflight -= 1
