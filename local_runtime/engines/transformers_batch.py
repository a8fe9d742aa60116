"""Continuous batching for the transformers engine: concurrent requests share forward passes.

How it schedules. One model thread owns the model and loops; at every step boundary it
1. forgets the rows whose client went away, so their slot is free before the next forward pass;
2. admits waiting requests in arrival order while fewer than `max_batch` rows run: each new prompt
   is prefilled alone (one forward pass, no padding) and its KV cache joins the batch's cache,
   left-padded to the batch's length (or the batch is padded to the newcomer's);
3. picks one token per row with that row's own sampling (greedy, or temperature/top-p drawn from
   the row's own seeded generator), turns it into text, applies the row's stop strings and
   max_tokens, and hands the text to the request's asyncio queue (one `call_soon_threadsafe` per
   event loop and step);
4. drops the rows that finished from the cache, trims padding nobody needs any more, and runs one
   decode forward pass for all remaining rows: one token each, a 2-D attention mask hiding each
   row's left padding, and per-row position ids, so every row attends to exactly its own sequence.

Why:
- A decode step is memory-bound: on a GPU it costs about the same for 1 row as for 32, so serving
  one request at a time left most of the hardware idle (8 streams got a third of what a static
  batch of 8 reaches). Iteration-level batching lets a request join or leave between any two
  steps, so nobody waits for a whole batch to finish.
- Not transformers' own `ContinuousBatchingManager` (`model.init_continuous_batching()`): in 5.23
  it samples with one `do_sample` and one seed for the whole manager (a greedy and a sampled
  request cannot share it; `seed` cannot be per request), has no stop strings, and its API moved
  between 5.17 (the GPU image) and 5.23. A loop over the model's ordinary forward and DynamicCache
  runs every architecture that has a plain per-layer KV cache, on CPU and CUDA alike.
- Prompts are prefilled one at a time rather than left-padded together: a request's first logits
  are then exactly what it gets alone, and with greedy decoding a batched answer equals the solo
  answer; the price is one extra forward pass per newcomer, which decode steps dwarf.
- Models whose cache is not plain keys/values per layer (sliding-window or recurrent layers,
  encoder-decoders) cannot be padded and concatenated: `Scheduler` finds out at load time with one
  probe forward pass and serves them one at a time with `generate()` in the same thread;
  status() shows `"batching": "serial"` and the reason, and the log says so.
- Every tensor the loop builds is created on the model's device (CUDA workers otherwise fail on
  the first step with a device mismatch).
- The waiting queue is bounded (`max_queue`): past it `submit` raises `Overloaded` (429) at once,
  so under overload a client is told to retry or go to another replica instead of waiting
  longer and longer; the gateway retries a 429 on another replica before the first byte.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from local_runtime.batching import Overloaded
from local_runtime.engines.transformers_rows import (
    Done,
    Event,
    Failed,
    Row,
    Ticket,
    batching_blocker,
)
from local_runtime.engines.transformers_sampling import adjust_logits, draw_probs

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class Scheduler:
    """The model thread and its queue; see the module docstring for how it schedules."""

    def __init__(
        self, model: Any, tokenizer: Any, device: str, max_batch: int, max_queue: int
    ) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be >= 1; got {max_batch}, {max_queue}")
        self._model = model
        self._tokenizer = tokenizer
        self._device = device
        self.max_batch = max_batch
        self.max_queue = max_queue
        eos = model.generation_config.eos_token_id
        self._eos = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
        self._top_k = int(getattr(model.generation_config, "top_k", None) or 0)
        params = inspect.signature(model.forward).parameters
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self.serial_reason = ""
        self._waiting: deque[Ticket] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None
        self._rows: list[Row] = []
        self._cache: Any = None
        self._logits: torch.Tensor | None = None  # one row of next-token logits per running row
        self._outbox: list[tuple[Ticket, Event | None]] = []
        self.steps = 0  # forward passes that decoded for the batch
        self.peak_batch = 0
        self.cancelled = 0  # requests dropped because their client went away

    def start(self) -> None:
        """Probe whether the model batches (in the loading thread), then start the model thread."""
        self.serial_reason = batching_blocker(self._model, self._device)
        if self.serial_reason:
            log.warning("serving one request at a time: %s", self.serial_reason)
        else:
            log.info("continuous batching of up to %d sequences", self.max_batch)
        self._running = True
        self._thread = threading.Thread(target=self._run, name="transformers-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            left = [*self._waiting, *(row.ticket for row in self._rows)]
            self._waiting.clear()
        self._rows, self._cache, self._logits = [], None, None
        for ticket in left:
            self._emit(ticket, Failed("the model was unloaded"))
        self._flush()

    def submit(self, ticket: Ticket) -> None:
        """Queue a request, or raise `Overloaded` when `max_queue` requests already wait."""
        with self._lock:
            waiting = len(self._waiting)
            if waiting < self.max_queue:
                self._waiting.append(ticket)
        if waiting >= self.max_queue:
            slots = 1 if self.serial_reason else self.max_batch
            raise Overloaded(
                f"the model is overloaded: {waiting} requests already wait for its {slots} "
                f"generation slot(s) (max_queue {self.max_queue}); retry later, or launch "
                "another replica of the model to serve more requests at once"
            )
        self._wake.set()

    def cancel(self, ticket: Ticket) -> None:
        """On the event loop: a waiting request leaves the queue now, a running row at the next
        step boundary (the model thread may be inside a forward pass that includes it)."""
        ticket.cancelled = True
        with self._lock:
            queued = ticket in self._waiting
            if queued:
                self._waiting.remove(ticket)
                self.cancelled += 1
        if queued:
            ticket.deliver(None)
        else:
            self._wake.set()

    def status(self) -> dict[str, Any]:
        return {
            "batching": "serial" if self.serial_reason else "continuous",
            **({"serial_reason": self.serial_reason} if self.serial_reason else {}),
            "max_batch": 1 if self.serial_reason else self.max_batch,
            "active": len(self._rows),
            "waiting": len(self._waiting),
            "max_queue": self.max_queue,
            "peak_batch": self.peak_batch,
            "steps": self.steps,
            "cancelled": self.cancelled,
        }

    # --- the model thread --------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while self._running:
                self._wake.clear()
                try:
                    busy = self._serial_step() if self.serial_reason else self._step()
                except Exception as exc:  # the model thread must outlive one bad step
                    log.exception("generation step failed")
                    self._fail_all(f"generation failed: {type(exc).__name__}: {exc}")
                    busy = True
                self._flush()
                if not busy:
                    self._wake.wait()

    def _next_waiting(self) -> Ticket | None:
        with self._lock:
            while self._waiting:
                ticket = self._waiting.popleft()
                if not ticket.cancelled:
                    return ticket
                self.cancelled += 1
                self._emit(ticket, None)
        return None

    def _step(self) -> bool:
        """One step boundary and one decode pass; False when there was nothing to do."""
        import torch

        self._keep([i for i, row in enumerate(self._rows) if not row.ticket.cancelled])
        while len(self._rows) < self.max_batch and (ticket := self._next_waiting()):
            self._admit(ticket)
        if not self._rows:
            return False
        assert self._logits is not None
        tokens = self._sample(self._logits)
        for row, token in zip(self._rows, tokens, strict=True):
            if piece := row.take(token):
                self._emit(row.ticket, piece)
            if row.finish:
                self._emit(row.ticket, Done(row.finish, row.generated))
        live = [i for i, row in enumerate(self._rows) if row.finish is None]
        self._keep(live)
        if not self._rows:
            return True
        lengths = torch.tensor([row.length for row in self._rows], device=self._device)
        total = int(lengths.max()) + 1
        mask = torch.arange(total, device=self._device) >= (total - 1 - lengths)[:, None]
        out = self._model(
            input_ids=torch.tensor([[tokens[i]] for i in live], device=self._device),
            attention_mask=mask.long(),
            position_ids=lengths[:, None],
            past_key_values=self._cache,
            use_cache=True,
        )
        self._logits = out.logits[:, -1, :]
        for row in self._rows:
            row.length += 1
        self.steps += 1
        self.peak_batch = max(self.peak_batch, len(self._rows))
        return True

    def _admit(self, ticket: Ticket) -> None:
        """Prefill one prompt alone and join its cache and logits to the batch's."""
        import torch

        out = self._model(
            input_ids=torch.tensor([ticket.prompt], device=self._device),
            use_cache=True,
            **self._keep_last,
        )
        cache, logits = out.past_key_values, out.logits[:, -1, :]
        if self._cache is None:
            self._cache, self._logits = cache, logits
        else:
            assert self._logits is not None
            have, new = self._cache.get_seq_length(), cache.get_seq_length()
            for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
                for name in ("keys", "values"):
                    setattr(
                        mine,
                        name,
                        torch.cat(
                            [
                                _pad_left(getattr(mine, name), new - have),
                                _pad_left(getattr(theirs, name), have - new),
                            ]
                        ),
                    )
            self._logits = torch.cat([self._logits, logits])
        self._rows.append(Row(ticket, self._tokenizer, self._eos, self._generator(ticket)))

    def _keep(self, indices: list[int]) -> None:
        """Keep only these rows; cut the left padding that no remaining row needs."""
        if len(indices) == len(self._rows):
            return
        import torch

        dropped = set(range(len(self._rows))) - set(indices)
        for i in dropped:
            if self._rows[i].finish is None:  # cancelled: nobody reads its events any more
                with self._lock:
                    self.cancelled += 1
                self._emit(self._rows[i].ticket, None)
        self._rows = [self._rows[i] for i in indices]
        if not self._rows:
            self._cache = self._logits = None
            return
        assert self._logits is not None
        index = torch.tensor(indices, device=self._device)
        keep = max(row.length for row in self._rows)
        for layer in self._cache.layers:
            layer.keys = layer.keys[index, :, -keep:, :]
            layer.values = layer.values[index, :, -keep:, :]
        self._logits = self._logits[index]

    def _generator(self, ticket: Ticket) -> torch.Generator | None:
        import torch

        if ticket.sampling.temperature == 0.0:
            return None
        gen = torch.Generator(device=self._device)
        if ticket.sampling.seed is None:
            gen.seed()
        else:
            gen.manual_seed(ticket.sampling.seed)
        return gen

    def _sample(self, logits: torch.Tensor) -> list[int]:
        """One token per row: bias and penalties first, then argmax for greedy rows, else
        temperature/top-k/top-p/min-p sampling (see transformers_sampling)."""
        import torch

        adjusted = [i for i, row in enumerate(self._rows) if row.adjusts_logits]
        if adjusted:
            logits = logits.to(torch.float32, copy=True)  # the model's own logits stay as they are
            for i in adjusted:
                row = self._rows[i]
                adjust_logits(logits[i], row.ticket.sampling, row.ticket.prompt, row.output)
        picks = logits.argmax(dim=-1)
        drawn = [i for i, row in enumerate(self._rows) if row.generator is not None]
        if drawn:
            index = torch.tensor(drawn, device=self._device)
            params = [self._rows[i].ticket.sampling for i in drawn]
            probs = draw_probs(logits[index].float(), params, self._top_k)
            for j, i in enumerate(drawn):
                picks[i] = torch.multinomial(probs[j], 1, generator=self._rows[i].generator)[0]
        return [int(t) for t in picks.tolist()]

    def _serial_step(self) -> bool:
        """The fallback: one whole request with `generate()`, tokens streamed as they come."""
        import torch
        from transformers import (
            LogitsProcessor,
            LogitsProcessorList,
            StoppingCriteria,
            StoppingCriteriaList,
        )
        from transformers.generation.streamers import BaseStreamer

        ticket = self._next_waiting()
        if ticket is None:
            return False
        row = Row(ticket, self._tokenizer, self._eos, None)
        self._rows = [row]
        scheduler = self

        class _Tokens(BaseStreamer):
            prompt_seen = False

            def put(self, value: torch.Tensor) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                if row.finish is None:
                    if piece := row.take(int(value.reshape(-1)[0])):
                        scheduler._emit(row.ticket, piece)
                    scheduler._flush()

            def end(self) -> None:
                pass

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: Any, **_: Any) -> torch.Tensor:
                done = row.finish is not None or row.ticket.cancelled
                return torch.full((input_ids.shape[0],), done, device=input_ids.device)

        prompt, sampling = ticket.prompt, ticket.sampling

        class _Adjust(LogitsProcessor):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                output = input_ids[0, len(prompt) :].tolist()
                scores = scores.to(torch.float32, copy=True)
                adjust_logits(scores[0], sampling, prompt, output)
                return scores

        kwargs = ticket.sampling.generate_kwargs(self._top_k)
        if ticket.sampling.adjusts_logits:
            kwargs["logits_processor"] = LogitsProcessorList([_Adjust()])
        if ticket.sampling.seed is not None:
            torch.manual_seed(ticket.sampling.seed)
        ids = torch.tensor([ticket.prompt], device=self._device)
        self._model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=ticket.max_new,
            pad_token_id=self._tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([_Stop()]),
            streamer=_Tokens(),
            **kwargs,
        )
        self._rows = []  # left as is when generate raises: _fail_all tells the client
        self.steps += row.generated
        self.peak_batch = 1
        if ticket.cancelled and row.finish is None:
            with self._lock:
                self.cancelled += 1
            self._emit(ticket, None)
        else:
            self._emit(ticket, Done(row.finish or "stop", row.generated))
        return True

    # --- delivery to the event loops ---------------------------------------------------------
    def _emit(self, ticket: Ticket, event: Event | None) -> None:
        self._outbox.append((ticket, event))

    def _flush(self) -> None:
        """Hand this step's events over: one wake-up per event loop, not one per token."""
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Ticket, Event | None]]] = {}
        for ticket, event in self._outbox:
            by_loop.setdefault(ticket.loop, []).append((ticket, event))
        self._outbox = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that loop is closed: nobody is left to read
                for ticket, _ in items:
                    ticket.cancelled = True

    def _fail_all(self, message: str) -> None:
        for row in self._rows:
            if row.finish is None:
                self._emit(row.ticket, Failed(message))
        self._rows, self._cache, self._logits = [], None, None


def _deliver(items: list[tuple[Ticket, Event | None]]) -> None:
    for ticket, event in items:
        ticket.deliver(event)


def _pad_left(tensor: torch.Tensor, n: int) -> torch.Tensor:
    """Prepend n zero positions on the sequence axis ([batch, heads, seq, dim]); n <= 0: as is."""
    import torch

    if n <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[-2] = n
    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)
