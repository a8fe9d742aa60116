"""Dynamic micro-batching: many small concurrent requests become a few large model calls.

Encoder models (embeddings, rerankers) are far faster per item on a batch of 32 than on 32 batches
of one, but each HTTP request usually carries one or a few texts. The batcher queues items from
all requests, cuts batches of at most `max_batch_size` items, and runs the model function on one
dedicated thread, so the event loop keeps accepting requests while the model computes and the
model never runs two batches at once.

When to cut a batch that is not full. While a batch computes, the next one accumulates by itself
and is cut as soon as the model is free: waiting would only add latency. With the model idle, a
fixed wait for the batch to fill (the old rule) made a lone client pay `max_wait_ms` on every
request. The rule now: with the model idle, a partial batch is cut once as many *requests* are
waiting as the last batch served, or `max_wait_ms` after that batch finished, whichever comes
first. The requests a batch answered are the ones likely to come straight back (closed-loop
clients), so a lone client (last batch: one request) is never held, and 32 clients that get their
answers together are gathered into one batch again instead of one batch of 1 followed by one of
31. No request waits more than `max_wait_ms` past the end of the previous batch; `max_wait_ms = 0`
always cuts at once.

Under a backlog, no gap between batches. While a batch computes, a *full* next batch (the queue
already holds `max_batch_size` items) is cut at once and handed to the model thread, where it
waits behind the running one and starts the moment that one returns, without a round trip through
the event loop (which first has to deliver the finished batch's results and may be late on a busy
machine: 5 % of the model thread's time at 256 clients, measured with the counters below). A
partial batch is never handed over early: it could still fill. At most one batch waits there; its
items count against the queue bound, and items whose request has gone meanwhile are dropped on the
model thread before the call.

The queue is bounded (`max_queue` items); beyond it `submit` raises `Overloaded` (HTTP 429)
instead of letting latency grow without bound.

A request's items may span batches; its results come back in its own order. An exception raised
by the model function fails only the requests with items in that batch. Each request costs one
future (not one per item): `enqueue` takes a callback instead, for callers that answer outside a
coroutine (the worker's front-process link answers straight from the completion callback).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from local_runtime.engines.base import EngineError

In = TypeVar("In")
Out = TypeVar("Out")

Done = Callable[[list[Any] | BaseException], None]


class Overloaded(EngineError):
    """The queue is full: the client should back off and retry (429)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=429, code="rate_limit_exceeded")


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 4096

    @classmethod
    def from_options(cls, options: dict[str, Any], **defaults: Any) -> BatchSettings:
        """Read `max_batch_size`, `max_wait_ms`, `max_queue` from an engine's `engine_options`."""
        base = cls(**defaults)
        try:
            settings = cls(
                max_batch_size=int(options.get("max_batch_size", base.max_batch_size)),
                max_wait_ms=float(options.get("max_wait_ms", base.max_wait_ms)),
                max_queue=int(options.get("max_queue", base.max_queue)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid batching option: {exc}") from exc
        if settings.max_batch_size < 1 or settings.max_queue < 1 or settings.max_wait_ms < 0:
            raise ValueError(
                "batching options need max_batch_size >= 1, max_queue >= 1, max_wait_ms >= 0"
            )
        return settings


class Ticket:
    """One request's place in the queue: its results so far and whom to tell when complete."""

    __slots__ = ("done", "finished", "remaining", "results")

    def __init__(self, size: int, done: Done) -> None:
        self.results: list[Any] = [None] * size
        self.remaining = size
        self.done = done
        self.finished = False

    def cancel(self) -> None:
        """The caller has gone: its queued items are skipped and it is not called back."""
        self.finished = True

    def _fail(self, exc: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self.done(exc)


class _Item:
    __slots__ = ("index", "ticket", "value")

    def __init__(self, value: Any, ticket: Ticket, index: int) -> None:
        self.value = value
        self.ticket = ticket
        self.index = index


class MicroBatcher(Generic[In, Out]):
    """Queue items, run `fn(list_of_items) -> list_of_results` on batches in one thread.

    Create it anywhere; it binds to the running event loop on the first `submit`/`enqueue`.
    """

    def __init__(
        self,
        fn: Callable[[list[In]], Sequence[Out]],
        settings: BatchSettings | None = None,
        *,
        name: str = "batcher",
    ) -> None:
        self._fn = fn
        self.settings = settings or BatchSettings()
        self._name = name
        self._pending: deque[_Item] = deque()
        self._pending_requests = 0  # tickets with items still queued
        self._wanted = 1  # requests that make a partial batch worth cutting (see module doc)
        self._last_end = -math.inf  # loop time the last batch finished
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._enough: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Batches handed to the model thread, oldest (the running one) first; at most two.
        self._in_model: list[list[_Item]] = []
        self._closed = False
        self.batches_run = 0
        self.items_run = 0
        # Where the model thread's time goes (/health shows them; bench/runtime reads them):
        # `busy_s` in the model function, `held_s` idle with items queued, held for a fuller batch.
        self.busy_s = 0.0
        self.held_s = 0.0
        self.busy_cpu_s = 0.0

    # --- public --------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Items not yet computing: queued, or in the batch waiting behind the running one."""
        return len(self._pending) + sum(len(batch) for batch in self._in_model[1:])

    def stats(self) -> dict[str, Any]:
        return {
            "queue_depth": self.queue_depth,
            "batches_in_model": len(self._in_model),  # computing, and waiting behind it
            "batches_run": self.batches_run,
            "items_run": self.items_run,
            "max_batch_size": self.settings.max_batch_size,
            "busy_s": round(self.busy_s, 6),
            "held_s": round(self.held_s, 6),
            "busy_cpu_s": round(self.busy_cpu_s, 6),
        }

    async def submit(self, items: Sequence[In]) -> list[Out]:
        """Run `items` through the model (possibly alongside others') and return their results."""
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()

        def done(outcome: list[Any] | BaseException) -> None:
            if future.done():
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        ticket = self.enqueue(items, done)
        try:
            return await future
        except asyncio.CancelledError:
            ticket.cancel()
            raise

    def enqueue(self, items: Sequence[In], done: Done) -> Ticket:
        """Queue `items`; `done(results)` or `done(exception)` is called once, on the loop's thread
        (at once for no items). Raises `Overloaded` (queue full) or a 503 `EngineError` (closing).
        """
        if self._closed:
            raise EngineError("the model is shutting down", status=503, code="unavailable")
        ticket = Ticket(len(items), done)
        if not items:
            ticket.finished = True
            done([])
            return ticket
        if self.queue_depth + len(items) > self.settings.max_queue:
            raise Overloaded(
                f"{self._name} is overloaded: {self.queue_depth} items already queued "
                f"(limit {self.settings.max_queue}); retry later"
            )
        self._ensure_started()
        assert self._wakeup is not None and self._enough is not None
        self._pending.extend(_Item(value, ticket, i) for i, value in enumerate(items))
        self._pending_requests += 1
        self._wakeup.set()
        if (
            self._pending_requests >= self._wanted
            or len(self._pending) >= self.settings.max_batch_size
        ):
            self._enough.set()
        return ticket

    def close(self) -> None:
        """Stop the collector; queued requests fail with 503. Call it on the event loop's thread.

        Synchronous so that an engine's `unload()` can call it; a batch already computing finishes
        on its thread and its results are dropped (its requests fail with 503 too), and one waiting
        behind it never runs.
        """
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        closing = EngineError("the model is shutting down", status=503, code="unavailable")
        for batch in self._in_model:
            for item in batch:
                item.ticket._fail(closing)
        self._in_model = []
        while self._pending:
            self._pending.popleft().ticket._fail(closing)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # --- internals -----------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._enough = asyncio.Event()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
            self._task = asyncio.get_running_loop().create_task(self._collect())

    async def _collect(self) -> None:
        assert self._wakeup is not None and self._enough is not None
        loop = asyncio.get_running_loop()
        wait_s = self.settings.max_wait_ms / 1000.0
        max_size = self.settings.max_batch_size
        while True:
            if self._in_model:
                # Computing: only a full batch is handed over now (see the module doc), and
                # only one waits behind the running batch.
                if len(self._in_model) > 1 or len(self._pending) < max_size:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
            elif not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            else:
                hold_s = self._last_end + wait_s - loop.time()
                if (
                    hold_s > 0
                    and self._pending_requests < self._wanted
                    and len(self._pending) < max_size
                ):
                    self._enough.clear()
                    held_from = loop.time()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._enough.wait(), hold_s)
                    self.held_s += loop.time() - held_from
            batch = self._cut(max_size)
            if batch:
                self._in_model.append(batch)
                future = loop.run_in_executor(self._executor, self._compute, batch)
                future.add_done_callback(partial(self._finish, batch))

    def _cut(self, max_size: int) -> list[_Item]:
        """Take up to `max_size` live items in arrival order; remember how many requests."""
        batch: list[_Item] = []
        requests = 0
        last: Ticket | None = None
        while self._pending and len(batch) < max_size:
            item = self._pending.popleft()
            ticket = item.ticket
            if item.index == len(ticket.results) - 1:
                self._pending_requests -= 1
            if ticket.finished:  # its request has gone away or already failed
                continue
            batch.append(item)
            if ticket is not last:
                requests += 1
                last = ticket
        if batch:
            self._wanted = requests
        return batch

    def _compute(self, batch: list[_Item]) -> tuple[list[_Item], Sequence[Any]]:
        """On the model thread. Items whose request went away while their batch waited behind
        another are dropped here (`finished` is only ever set, so a stale read costs one item)."""
        live = [item for item in batch if not item.ticket.finished]
        if not live:
            return live, []
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return live, self._fn([item.value for item in live])
        finally:
            self.busy_s += time.perf_counter() - start
            self.busy_cpu_s += time.thread_time() - cpu

    def _finish(
        self, batch: list[_Item], future: asyncio.Future[tuple[list[_Item], Sequence[Any]]]
    ) -> None:
        """On the loop's thread, when the model thread is done with `batch`."""
        self._in_model = [b for b in self._in_model if b is not batch]
        if not self._in_model:
            self._last_end = asyncio.get_running_loop().time()
        if self._wakeup is not None:
            self._wakeup.set()
        if future.cancelled():  # closed: its requests have been failed already
            return
        exc = future.exception()
        if exc is not None:
            self.batches_run += 1
            self.items_run += len(batch)
            for item in batch:
                item.ticket._fail(exc)
            return
        live, results = future.result()
        if not live:
            return
        self.batches_run += 1
        self.items_run += len(live)
        if len(results) != len(live):
            error = RuntimeError(
                f"{self._name}: batch function returned {len(results)} results "
                f"for {len(live)} items"
            )
            for item in live:
                item.ticket._fail(error)
            return
        for item, result in zip(live, results, strict=True):
            ticket = item.ticket
            if ticket.finished:
                continue
            ticket.results[item.index] = result
            ticket.remaining -= 1
            if ticket.remaining == 0:
                ticket.finished = True
                ticket.done(ticket.results)
