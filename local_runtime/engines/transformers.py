"""Chat/completions and embeddings with plain Hugging Face transformers: the fallback engine.

For models no faster engine loads (new architectures, `trust_remote_code` models, a quick try of
a checkpoint), at the price of speed.

Why these choices:
- Concurrent chat/completions requests share forward passes (continuous batching, in
  `transformers_batch`): one model thread owns the model, requests join the running batch between
  two decode steps and leave it when done or when their client goes away. On a GPU a decode step
  costs about the same for 1 row as for 32, so this is where the throughput is. Models whose KV
  cache cannot be padded and joined (sliding-window, recurrent, encoder-decoder) are served one at
  a time with `generate()` in that same thread; status() says which (`batching`), with counts of
  `active` and `waiting` requests, `peak_batch` and `steps` (decode passes).
- Requests are validated and tokenized on the event loop (errors get their 400 before any
  streaming), then handed to the model thread; their text comes back through an asyncio queue.
  Stop strings are matched in the model thread on the text as it is made (held back while they
  might be starting), so a row stops, and frees its slot, at the token that completes one.
- Chat prompts come from the tokenizer's own chat template (`apply_chat_template`), so every model
  gets its trained format; a model without one is served /v1/completions only.
- Tool calls: `tools` (and `tool_choice`, for templates that read it) go to the chat template, so
  the model sees them the way it was trained to; the output is parsed into OpenAI `tool_calls`
  by `toolcalls` (Hermes `<tool_call>` blocks, bare JSON calls), streamed or not. A template that
  does not read `tools` would drop them silently, so such a request is refused (400, as Ollama
  does) unless `tool_choice` is "none". An assistant's `tool_calls` and `tool` results in the
  history are rendered by the template too. A `tool_choice` of "required" or a named function is
  enforced by ending the prompt with the start of a call (`<tool_call>` and the name, for
  templates that write Hermes tags; a bare `{"name": ...` otherwise), which the model continues.
- The waiting queue is bounded (`max_queue`): beyond it a request gets 429 at once, before any
  byte of a stream is sent.
- Embeddings: masked mean pooling over the last hidden state, then L2 normalisation, what
  sentence-transformers does for most models, for checkpoints it cannot load; one batch at a time.
- `trust_remote_code` is passed only when the launch asked for it.

Engine options: `torch_dtype` ("float32", "bfloat16"...; default float32 on CPU, the checkpoint's
dtype on CUDA), `max_tokens` (default completion length when the request gives none, 512),
`max_batch` (sequences decoded together; default 8 on CPU, 32 on CUDA), `max_queue` (requests
waiting for a slot before 429; default 8 x max_batch), `batch_size` (embeddings, 32), `normalize`
(embeddings, true).
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local_runtime.engines import base
from local_runtime.engines.base import Engine, EngineError
from local_runtime.engines.toolcalls import (
    OPEN,
    Piece,
    ToolCallParser,
    ToolRequest,
    read_tools,
    split,
)
from local_runtime.engines.transformers_batch import Scheduler
from local_runtime.engines.transformers_rows import Done, Failed, Ticket
from local_runtime.engines.transformers_sampling import parse_sampling
from local_runtime.engines.transformers_text import Reply, chat_messages, usage
from local_runtime.spec import ResolvedSpec
from modelport_wire import openai as wire

if TYPE_CHECKING:
    import torch

_BY_TYPE = {
    "llm": frozenset({base.CHAT, base.COMPLETIONS}),
    "embedding": frozenset({base.EMBEDDINGS}),
}
_WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")


class TransformersEngine(Engine):
    name = "transformers"
    model_types = frozenset(_BY_TYPE)
    capabilities = frozenset().union(*_BY_TYPE.values())
    requires = "transformers"

    def __init__(self, spec: ResolvedSpec) -> None:
        super().__init__(spec)
        # What this instance serves follows the model type (the worker reads the instance).
        self.capabilities = _BY_TYPE.get(spec.model_type, frozenset())  # type: ignore[misc]
        self._embed_lock = asyncio.Lock()
        self._waiting = 0
        self._batcher: Scheduler | None = None
        self._vocab_size = 0  # rows of the output head: the token ids logit_bias may name
        self._model: Any = None
        self._tokenizer: Any = None
        self._device = "cpu"
        self._template_vars: dict[str, frozenset[str]] = {}  # by template source
        self.context_length = spec.context_length or 2048

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        ok, reason = super().match(spec)
        if not ok:
            return ok, reason
        if spec.model_format not in ("pytorch", "awq", "gptq"):
            return False, (
                f"transformers loads Hugging Face folders (safetensors/PyTorch weights), not "
                f"{spec.model_format}"
                + (" (use llama.cpp for GGUF)" if spec.model_format == "gguf" else "")
            )
        path = Path(spec.model_path)
        if not (path / "config.json").is_file():
            return (
                False,
                f"transformers needs a Hugging Face model folder with config.json; {path} has none",
            )
        if not any(next(path.glob(pattern), None) for pattern in _WEIGHTS):
            have = ", ".join(sorted(p.name for p in path.iterdir())[:8])
            return False, f"no safetensors or PyTorch weights in {path} (it has {have})"
        return True, ""

    # --- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        import torch
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        cuda = self.spec.device.startswith(("cuda", "gpu"))
        self._device = f"cuda:{(self.spec.gpu_idx or [0])[0]}" if cuda else "cpu"
        dtype_name = self.spec.engine_options.get("torch_dtype")
        dtype = getattr(torch, dtype_name) if dtype_name else ("auto" if cuda else torch.float32)
        common = {"trust_remote_code": self.spec.trust_remote_code, "local_files_only": True}
        tokenizer = AutoTokenizer.from_pretrained(self.spec.model_path, **common)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        auto: Any = AutoModelForCausalLM if self.spec.model_type == "llm" else AutoModel
        model = auto.from_pretrained(self.spec.model_path, dtype=dtype, **common)
        model.to(self._device)
        model.eval()
        if not self.spec.context_length:
            limit = getattr(model.config, "max_position_embeddings", None)
            if isinstance(limit, int) and limit > 0:
                self.context_length = limit
        self._model, self._tokenizer = model, tokenizer
        if self.spec.model_type == "llm":
            self._vocab_size = int(model.get_output_embeddings().weight.shape[0])
            default_batch = 32 if cuda else 8
            max_batch = int(self.spec.engine_options.get("max_batch", default_batch))
            max_queue = int(self.spec.engine_options.get("max_queue", 8 * max_batch))
            self._batcher = Scheduler(model, tokenizer, self._device, max_batch, max_queue)
            self._batcher.start()

    def unload(self) -> None:
        if self._batcher is not None:
            self._batcher.stop()
        self._batcher = None
        self._model = self._tokenizer = None

    def status(self) -> dict[str, Any]:
        if self._batcher is not None:
            return self._batcher.status()
        return {"active": int(self._embed_lock.locked()), "waiting": self._waiting}

    def _need(self, model_type: str) -> None:
        if self.spec.model_type != model_type:
            raise EngineError(f"model {self.spec.uid!r} is a {self.spec.model_type} model")
        if self._model is None:
            raise EngineError("model is not loaded", status=503, code="model_not_loaded")

    async def _acquire(self) -> None:
        self._waiting += 1
        try:
            await self._embed_lock.acquire()
        finally:
            self._waiting -= 1

    # --- text generation -------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        self._need("llm")
        tools = read_tools(body)
        prompt = self._chat_prompt(chat_messages(body.get("messages")), tools)
        opening = ""
        if tools.forces:
            opening = tools.opening(hermes=OPEN in self._template_source(tools.tools))
        reply = Reply(self.spec.uid, chat=True)
        return await self._start(
            prompt + opening, body, reply, special=False, tools=tools.names, opening=opening
        )

    def _chat_prompt(self, messages: list[dict[str, Any]], tools: ToolRequest) -> str:
        """The prompt from the model's chat template, with the tools if the template reads them."""
        from jinja2 import TemplateError

        if not getattr(self._tokenizer, "chat_template", None):
            raise EngineError(
                f"model {self.spec.uid!r} has no chat template; use /v1/completions",
                code="no_chat_template",
            )
        extra: dict[str, Any] = {}
        try:
            if tools.tools:
                reads = self._template_reads(tools.tools)
                if "tools" in reads:
                    extra["tools"] = tools.tools
                elif tools.choice != "none":
                    raise EngineError(
                        f"model {self.spec.uid!r} cannot be offered tools: its chat template "
                        "does not render them; leave out 'tools' (or set tool_choice to "
                        '"none"), or serve a model whose template supports tools',
                        code="tools_not_supported",
                    )
                if tools.choice is not None and "tool_choice" in reads:
                    extra["tool_choice"] = tools.choice
            return str(
                self._tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False, **extra
                )
            )
        except TemplateError as exc:
            raise EngineError(f"the model's chat template rejected the messages: {exc}") from None

    def _template_reads(self, tools: list[dict[str, Any]]) -> frozenset[str]:
        """The variables read by the template that renders these tools (jinja's own analysis)."""
        import jinja2
        from jinja2 import meta

        source = self._template_source(tools)
        if source not in self._template_vars:
            # transformers' `{% generation %}` tag is not jinja's; it wraps text, reads nothing.
            plain = re.sub(r"{%-?\s*(end)?generation\s*-?%}", "", source)
            env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])  # noqa: S701
            self._template_vars[source] = frozenset(
                meta.find_undeclared_variables(env.parse(plain))
            )
        return self._template_vars[source]

    def _template_source(self, tools: list[dict[str, Any]]) -> str:
        """The chat template that renders these tools (a tokenizer may keep a "tool_use" one)."""
        return str(self._tokenizer.get_chat_template(None, tools or None))

    async def completions(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        self._need("llm")
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise EngineError("prompt must be one string", code="prompt")
        return await self._start(prompt, body, Reply(self.spec.uid, chat=False), special=True)

    async def _start(
        self,
        prompt: str,
        body: dict[str, Any],
        reply: Reply,
        *,
        special: bool,
        tools: frozenset[str] = frozenset(),
        opening: str = "",
    ) -> dict[str, Any] | AsyncIterator[bytes]:
        """Validate, tokenize and queue now (errors and a full queue get their status before any
        byte is sent), then generate or stream. `tools`: the functions whose calls to parse;
        `opening`: the start of a call that ends the prompt, the output's beginning for the
        parser (see `ToolRequest.opening`)."""
        sampling = parse_sampling(body, self._vocab_size)
        ids = self._tokenizer(prompt, add_special_tokens=special)["input_ids"]
        room = self.context_length - len(ids)
        if room < 1:
            raise EngineError(
                f"the prompt has {len(ids)} tokens; this model's context is {self.context_length}",
                code="context_length_exceeded",
            )
        default = int(self.spec.engine_options.get("max_tokens", 512))
        ticket = Ticket(list(ids), min(sampling.max_tokens or default, room), sampling)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            stream = self._stream(ticket, reply, include_usage, tools, opening)
            # Its first step submits the ticket: a full queue raises here, before the 200.
            return _prepend(await anext(stream), stream)
        scheduler = self._scheduler
        scheduler.submit(ticket)
        parts: list[str] = []
        try:
            while isinstance(event := await ticket.events.get(), str):
                parts.append(event)
        finally:
            if not ticket.released.is_set():  # this task was cancelled: free the row
                scheduler.cancel(ticket)
        if isinstance(event, Failed):
            raise EngineError(event.message, status=500, code="generation_failed")
        text, calls = split(opening + "".join(parts), tools) if tools else ("".join(parts), [])
        finish = "tool_calls" if calls else event.finish_reason
        return reply.full(text, finish, self._usage(ticket, event), calls)

    @property
    def _scheduler(self) -> Scheduler:
        if self._batcher is None:
            raise EngineError("model is not loaded", status=503, code="model_not_loaded")
        return self._batcher

    @staticmethod
    def _usage(ticket: Ticket, done: Done) -> dict[str, int]:
        return usage(len(ticket.prompt), done.completion_tokens)

    async def _stream(
        self,
        ticket: Ticket,
        reply: Reply,
        include_usage: bool,
        tools: frozenset[str],
        opening: str,
    ) -> AsyncGenerator[bytes, None]:
        scheduler = self._scheduler
        scheduler.submit(ticket)
        parser = ToolCallParser(tools) if tools else None
        calls = 0

        def frames(pieces: list[Piece]) -> Iterator[bytes]:
            nonlocal calls
            for piece in pieces:
                if isinstance(piece, str):
                    yield wire.frame_json(reply.chunk(piece, None))
                    continue
                for delta in piece.deltas(calls):
                    yield wire.frame_json(reply.chunk(None, None, tool_call=delta))
                calls += 1

        try:
            yield wire.frame_json(reply.chunk("" if reply.chat else None, None, first=True))
            if parser and opening:
                for frame in frames(parser.feed(opening)):
                    yield frame
            while isinstance(event := await ticket.events.get(), str):
                for frame in frames(parser.feed(event) if parser else [event]):
                    yield frame
            if parser:  # what it held back, also before an error: no output is lost
                for frame in frames(parser.finish()):
                    yield frame
            if isinstance(event, Failed):
                yield wire.error_frame(event.message, code="generation_failed")
                return
            yield wire.frame_json(reply.chunk(None, "tool_calls" if calls else event.finish_reason))
            if include_usage:
                yield wire.frame_json(reply.usage_chunk(self._usage(ticket, event)))
            yield wire.DONE
        finally:
            if not ticket.released.is_set():  # the client left: the row goes at the next step
                scheduler.cancel(ticket)
                await ticket.released.wait()

    # --- embeddings ------------------------------------------------------------------------
    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        self._need("embedding")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise EngineError("input must be a string or a non-empty list of strings", code="input")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise EngineError("encoding_format must be 'float' or 'base64'")
        dims = body.get("dimensions")
        await self._acquire()
        try:
            vectors, n_tokens = await asyncio.to_thread(self._embed, texts)
        finally:
            self._embed_lock.release()
        if dims is not None:
            if not isinstance(dims, int) or not 0 < dims <= vectors.shape[1]:
                raise EngineError(f"dimensions must be between 1 and {vectors.shape[1]}")
            vectors = vectors[:, :dims]
            vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        data = []
        for i, vec in enumerate(vectors):
            value: Any = (
                base64.b64encode(vec.numpy().astype("<f4").tobytes()).decode()
                if fmt == "base64"
                else vec.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        use = {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
        return {"object": "list", "data": data, "model": self.spec.uid, "usage": use}

    def _embed(self, texts: list[str]) -> tuple[torch.Tensor, int]:
        import torch

        batch = int(self.spec.engine_options.get("batch_size", 32))
        normalize = bool(self.spec.engine_options.get("normalize", True))
        parts, n_tokens = [], 0
        with torch.inference_mode():
            for start in range(0, len(texts), batch):
                enc = self._tokenizer(
                    texts[start : start + batch],
                    padding=True,
                    truncation=True,
                    max_length=self.context_length,
                    return_tensors="pt",
                ).to(self._device)
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
                if normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                parts.append(pooled.float().cpu())
                n_tokens += int(enc["attention_mask"].sum())
        return torch.cat(parts), n_tokens


async def _prepend(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """`first`, then the rest of a stream already started; closing this closes that."""
    try:
        yield first
        async for frame in rest:
            yield frame
    finally:
        await rest.aclose()
