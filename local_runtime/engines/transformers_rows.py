"""One request of the transformers engine's batched loop, on each side of the thread boundary.

`Ticket` is the request as the event loop sees it (a queue of text pieces, then `Done` or
`Failed`); `Row` is the same request as the model thread sees it (its decoded text, stop strings,
limits and generator). `batching_blocker` says why a model cannot join the batched loop. Split out
of transformers_batch.py, whose `Scheduler` moves tickets and rows through the loop.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any

from local_runtime.engines.transformers_sampling import Sampling
from local_runtime.engines.transformers_text import StopScanner, TextDelta


@dataclass(frozen=True)
class Done:
    finish_reason: str
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    message: str


Event = str | Done | Failed


class Ticket:
    """One request as the event loop sees it: it reads `events`; the model thread fills them.

    `released` is set once the model thread holds nothing of the request any more (finished,
    failed, or dropped after `cancel()`), so a client that leaves can wait for its slot to be free.
    """

    def __init__(self, prompt: list[int], max_new: int, sampling: Sampling) -> None:
        self.prompt = prompt
        self.max_new = max_new
        self.sampling = sampling
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.released = asyncio.Event()
        self.cancelled = False  # written by the event loop, read by the model thread

    def deliver(self, event: Event | None) -> None:
        """On the event loop: None only releases (a dropped request gets no more events)."""
        if event is not None:
            self.events.put_nowait(event)
        if event is None or not isinstance(event, str):
            self.released.set()


class Row:
    """One request as the model thread sees it: its text, stop strings, limits and generator."""

    def __init__(self, ticket: Ticket, tokenizer: Any, eos: set[int], generator: Any) -> None:
        self.ticket = ticket
        self.eos = eos
        self.generator = generator
        self.text = TextDelta(tokenizer)
        self.scanner = StopScanner(ticket.sampling.stops)
        self.generated = 0
        self.length = len(ticket.prompt)  # tokens of this row in the KV cache
        self.finish: str | None = None
        self.output: list[int] = []  # the tokens so far, kept for penalties only

    @property
    def adjusts_logits(self) -> bool:
        return self.ticket.sampling.adjusts_logits

    def take(self, token: int) -> str:
        """Account one new token; return the text it releases; set `finish` when done."""
        self.generated += 1
        if self.adjusts_logits:
            self.output.append(token)
        if token in self.eos:
            self.finish = "stop"
            return self._drain()
        piece = self.scanner.feed(self.text.push(token))
        if self.scanner.stopped:
            self.finish = "stop"
        elif self.generated >= self.ticket.max_new:
            self.finish = "length"
            piece += self._drain()
        return piece

    def _drain(self) -> str:
        return self.scanner.feed(self.text.flush()) + self.scanner.flush()


def batching_blocker(model: Any, device: str) -> str:
    """Why this model cannot join the batched loop ("" when it can), found with one probe pass."""
    import torch
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if getattr(model.config, "is_encoder_decoder", False):
        return "encoder-decoder models keep two caches"
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return f"{type(model).__name__}.forward takes no position_ids"
    with torch.inference_mode():
        cache = model(
            input_ids=torch.tensor([[1, 2]], device=device), use_cache=True
        ).past_key_values
    if type(cache) is not DynamicCache:
        return f"its cache is a {type(cache).__name__}, not a DynamicCache"
    kinds = sorted(
        {type(layer).__name__ for layer in cache.layers if type(layer) is not DynamicLayer}
    )
    if kinds:
        return f"its cache has {', '.join(kinds)} layers, which cannot be padded and joined"
    return ""
