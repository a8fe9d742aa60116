"""When the micro-batcher cuts a partial batch (local_runtime.batching's module docstring).

No timing thresholds: `max_wait_ms` is made far longer than any test limit, so a request that
completes at all was not held for it, and a request that is held stays visibly uncut.
"""

from __future__ import annotations

import asyncio

import pytest

from local_runtime.batching import BatchSettings, MicroBatcher, Overloaded
from local_runtime.engines.base import EngineError

FOREVER_MS = 3_600_000.0  # an hour: nothing in these tests may wait for it
BOUND_S = 60.0  # a bound for a slow machine, not a speed threshold


class Sizes:
    """A model function that records the size of every batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        return [x + 1 for x in items]


async def settle() -> None:
    """Let the collector and the model thread run whatever they would run now: only before
    asserting that something has *not* happened (a non-event cannot be polled for)."""
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_a_lone_request_on_an_idle_model_is_cut_at_once():
    fn = Sizes()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=64, max_wait_ms=FOREVER_MS))
    assert await asyncio.wait_for(batcher.submit([1]), BOUND_S) == [2]
    assert fn.batches == [[1]]
    batcher.close()


async def test_a_lone_client_is_never_held():
    fn = Sizes()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=64, max_wait_ms=FOREVER_MS))
    for i in range(5):  # one request at a time, each sent when the last one was answered
        assert await asyncio.wait_for(batcher.submit([i, i]), BOUND_S) == [i + 1, i + 1]
    assert fn.batches == [[i, i] for i in range(5)]
    batcher.close()


async def test_after_serving_three_requests_a_partial_batch_waits_for_three():
    fn = Sizes()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=64, max_wait_ms=FOREVER_MS))
    assert await asyncio.gather(*(batcher.submit([i]) for i in range(3))) == [[1], [2], [3]]
    assert fn.batches == [[0, 1, 2]]  # three requests in the last batch

    first = asyncio.ensure_future(batcher.submit([10]))
    await settle()
    assert not first.done() and len(fn.batches) == 1  # held: two more are expected

    rest = asyncio.gather(batcher.submit([11]), batcher.submit([12]))
    assert await asyncio.wait_for(first, BOUND_S) == [11]
    assert await asyncio.wait_for(rest, BOUND_S) == [[12], [13]]
    assert fn.batches == [[0, 1, 2], [10, 11, 12]]
    batcher.close()


async def test_a_full_batch_is_cut_even_while_more_requests_are_expected():
    fn = Sizes()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=4, max_wait_ms=FOREVER_MS))
    await asyncio.gather(*(batcher.submit([i]) for i in range(3)))
    # one request of four items: fewer requests than the last batch had, but a full batch
    assert await asyncio.wait_for(batcher.submit([5, 6, 7, 8]), BOUND_S) == [6, 7, 8, 9]
    assert fn.batches[-1] == [5, 6, 7, 8]
    batcher.close()


async def test_the_hold_ends_after_max_wait_ms():
    fn = Sizes()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=64, max_wait_ms=20))
    await asyncio.gather(*(batcher.submit([i]) for i in range(3)))
    assert await asyncio.wait_for(batcher.submit([7]), BOUND_S) == [8]
    assert fn.batches[-1] == [7]
    batcher.close()


async def test_a_request_cancelled_while_held_is_skipped():
    fn = Sizes()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=64, max_wait_ms=FOREVER_MS))
    await asyncio.gather(*(batcher.submit([i]) for i in range(2)))  # expect two requests
    gone = asyncio.ensure_future(batcher.submit([50]))
    async with asyncio.timeout(BOUND_S):  # a bound, not a timing claim
        while batcher.queue_depth != 1:  # until it is queued (and held: one more is expected)
            await asyncio.sleep(0.001)
    gone.cancel()
    kept = asyncio.ensure_future(batcher.submit([60]))
    # two requests reached the queue, so the batch is cut, without the cancelled one
    assert await asyncio.wait_for(kept, BOUND_S) == [61]
    assert fn.batches[-1] == [60]
    batcher.close()


async def test_enqueue_calls_back_once_with_results_or_the_error():
    fn = Sizes()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=8, max_wait_ms=0, max_queue=3))
    outcomes: asyncio.Queue[object] = asyncio.Queue()
    batcher.enqueue([1, 2], outcomes.put_nowait)
    assert await asyncio.wait_for(outcomes.get(), BOUND_S) == [2, 3]

    batcher.enqueue([], outcomes.put_nowait)  # nothing to compute: answered at once
    assert outcomes.get_nowait() == []

    with pytest.raises(Overloaded):
        batcher.enqueue([1, 2, 3, 4], outcomes.put_nowait)

    batcher.close()
    with pytest.raises(EngineError) as info:
        batcher.enqueue([1], outcomes.put_nowait)
    assert info.value.status == 503
    assert outcomes.empty()
