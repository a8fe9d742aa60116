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

Tool calls: llama.cpp renders `tools` through the model's template and parses the calls of the
formats it knows. It does not enforce `tool_choice` (a named function is refused as a type error
and ignored, "required" is not forced) and a template that cannot render tools drops them
silently; so tools with "auto" on such a template are a 400 `tools_not_supported` (llama.cpp's
own `chat_template_caps`, read at load), and a forcing choice is done here with its JSON-schema
grammar: the answer is constrained to the named function's arguments, or for "required" to
`{"name": <an offered function>, "arguments": ...}`, and comes back as an OpenAI tool call
(streamed: role, then the call once complete). An answer that is not a whole call (cut by
max_tokens) comes back as content.

The library also starts llama-server's HTTP listener on a random loopback port; we use it once,
for /props at load, and protect it with a random API key so that nothing else on the machine can
use it at all.
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

from local_runtime.batching import Overloaded
from local_runtime.engines import base
from local_runtime.engines.base import Engine, EngineError
from local_runtime.engines.toolcalls import ToolRequest, read_tools
from local_runtime.spec import FORMAT_ALIASES, ResolvedSpec
from modelport_wire import openai as wire

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
        self.supports_tools: bool | None = None  # the chat template renders `tools` (None: unknown)

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
        api_key = secrets.token_urlsafe(32)
        params.api_keys = [api_key]
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
        self.supports_tools = self._template_caps(api_key).get("supports_tools")
        # One thread per in-flight request: they spend their time blocked in C, GIL released.
        self._pool = ThreadPoolExecutor(
            max_workers=max(self.n_parallel * 2, 8), thread_name_prefix="llama"
        )

    def _template_caps(self, key: str) -> dict[str, Any]:
        """What llama.cpp found the chat template can render (its /props `chat_template_caps`),
        asked once of its own loopback listener; {} when it cannot say."""
        import urllib.request

        url = f"{self._server.listening_address}/props"
        auth = {"Authorization": f"Bearer {key}"}
        request = urllib.request.Request(url, headers=auth)  # noqa: S310 (our loopback listener)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 (loopback)
                caps = orjson.loads(r.read()).get("chat_template_caps")
        except (OSError, ValueError):
            return {}
        return caps if isinstance(caps, dict) else {}

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
            "supports_tools": self.supports_tools,
        }

    # --- operations ------------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        if not isinstance(body.get("messages"), list):
            raise EngineError("'messages' must be a list of messages", code="messages")
        tools = read_tools(body)
        if not tools.forces:
            if tools.tools and tools.choice != "none" and self.supports_tools is False:
                raise EngineError(
                    f"model {self.spec.uid!r} cannot be offered tools: its chat template does "
                    "not render them, so the model would never see them. Force a call with "
                    "tool_choice (its arguments then follow the function's schema), leave out "
                    "'tools' (or set tool_choice to \"none\"), or launch the model with a "
                    "chat_template that renders tools",
                    code="tools_not_supported",
                )
            out = await self._handle(self._server.handle_chat_completions, body)
        else:
            out = await self._forced_chat(body, tools)
        return base.with_openai_chat_fields(out) if isinstance(out, dict) else out

    async def _forced_chat(
        self, body: dict[str, Any], tools: ToolRequest
    ) -> dict[str, Any] | AsyncIterator[bytes]:
        """A call forced by `tool_choice`, through the grammar of its JSON schema."""
        if body.get("response_format") not in (None, {"type": "text"}):
            raise EngineError(
                "response_format cannot be combined with a tool_choice that forces a call: the "
                "call's arguments already follow the function's JSON schema",
                code="invalid_value",
            )
        forced = _ForcedCall(tools)
        schema = {"name": "tool_call", "schema": tools.call_schema()}
        constrained = {
            **body,
            "tool_choice": "none",  # the template still shows the tools; the grammar decides
            "response_format": {"type": "json_schema", "json_schema": schema},
        }
        out = await self._handle(self._server.handle_chat_completions, constrained, forced)
        return forced.response(out) if isinstance(out, dict) else out

    async def completions(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        if "prompt" not in body:
            raise EngineError("'prompt' is required", code="prompt")
        return await self._handle(self._server.handle_completions, body)

    async def _handle(
        self, handler: Handler, body: dict[str, Any], forced: _ForcedCall | None = None
    ) -> dict[str, Any] | AsyncIterator[bytes]:
        if self._inflight >= self.max_queue:
            raise Overloaded(
                f"{self.spec.uid} has {self._inflight} requests in flight "
                f"(limit {self.max_queue}); retry later"
            )
        body.pop("model", None)  # llama.cpp serves one model; the UID is set at load
        payload = orjson.dumps(body)
        if body.get("stream"):
            return await self._start_stream(handler, payload, forced)
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

    async def _start_stream(
        self, handler: Handler, payload: bytes, forced: _ForcedCall | None
    ) -> AsyncIterator[bytes]:
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
        return self._frames(first, queue, stop, forced)

    async def _frames(
        self,
        first: bytes,
        queue: asyncio.Queue[bytes | EngineError | None],
        stop: threading.Event,
        forced: _ForcedCall | None,
    ) -> AsyncIterator[bytes]:
        try:
            chunk: bytes | EngineError | None = first
            while chunk is not None:
                if isinstance(chunk, EngineError):
                    for held in forced.flush() if forced else ():
                        yield wire.frame(held)
                    yield wire.error_frame(chunk.message, code=chunk.code)
                elif forced is None:
                    yield wire.frame(chunk)
                else:
                    for out in forced.chunk(chunk):
                        yield wire.frame(out)
                chunk = await queue.get()
            yield wire.DONE
        finally:
            stop.set()  # the client went away (or we finished): let llama.cpp free the slot
            self._inflight -= 1


class _ForcedCall:
    """llama.cpp's answer to a forcing `tool_choice`, constrained to the call's JSON schema
    (`ToolRequest.call_schema`), reshaped into an OpenAI tool call."""

    def __init__(self, tools: ToolRequest) -> None:
        self._tools = tools
        self._text: list[str] = []
        self._last: dict[str, Any] = {}  # the latest chunk: id, model, created for ours

    def response(self, out: dict[str, Any]) -> dict[str, Any]:
        choice = out["choices"][0]
        call = self._tools.forced_call(choice["message"].get("content") or "")
        if call is not None:
            choice["message"] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [call.message()],
            }
            choice["finish_reason"] = "tool_calls"
        return out

    def chunk(self, raw: bytes) -> list[bytes]:
        """What to send for one of llama.cpp's stream chunks: the role chunk and the usage chunk
        as they are; the call's text is held until the finish, then sent as the call."""
        if raw.startswith(_ERROR_PREFIX):
            return [*self.flush(), raw]
        data = orjson.loads(raw)
        choices = data.get("choices") or []
        if not choices:  # the usage chunk
            return [raw]
        self._last = data
        choice = choices[0]
        delta = choice.get("delta") or {}
        text = delta.pop("content", None)
        if text:
            self._text.append(text)
        if choice.get("finish_reason") is None:
            return [orjson.dumps(data)] if delta else []
        call = self._tools.forced_call("".join(self._text))
        if call is None:  # not a whole call: the text as content, then the finish as sent
            return [*self.flush(), orjson.dumps(data)]
        self._text = []
        parts = [self._with({"tool_calls": [part]}, None) for part in call.deltas(0)]
        return [*parts, self._with({}, "tool_calls")]

    def flush(self) -> list[bytes]:
        """The text held so far as one content chunk (before an error or a cut-short finish)."""
        text, self._text = "".join(self._text), []
        return [self._with({"content": text}, None)] if text else []

    def _with(self, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return orjson.dumps({**self._last, "choices": [choice]})
