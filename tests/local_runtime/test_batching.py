"""The micro-batcher: merging, ordering, bounds, overload, failure isolation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from local_runtime.batching import BatchSettings, MicroBatcher, Overloaded
from local_runtime.engines.base import EngineError


class Recorder:
    """A batch function that records its batches and can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a batch has reached the model thread
        self.fail_when: int | None = None  # fail batches containing this value

    def __call__(self, items: list[int]) -> list[int]:
        self.entered.set()
        self.gate.wait()
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        if self.fail_when is not None and self.fail_when in items:
            raise ValueError(f"bad item {self.fail_when}")
        return [x * 10 for x in items]


async def until(condition: Callable[[], bool], bound_s: float = 60.0) -> None:
    """Poll `condition` on the event loop; fail after a bound meant for a slow machine."""
    deadline = asyncio.get_running_loop().time() + bound_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def first_batch_held(
    fn: Recorder,
    settings: BatchSettings,
    items: list[int],
    model: Callable[[list[int]], list[int]] | None = None,
) -> tuple[MicroBatcher[int, int], asyncio.Future[list[int]]]:
    """A batcher (over `model`, default `fn`) whose first batch, `items`, is held in the model
    thread until `fn.gate` is set."""
    fn.gate.clear()
    batcher: MicroBatcher[int, int] = MicroBatcher(model or fn, settings)
    first = asyncio.ensure_future(batcher.submit(items))
    await until(fn.entered.is_set)
    return batcher, first


async def test_concurrent_requests_are_merged_into_one_batch():
    fn = Recorder()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=64, max_wait_ms=50))
    results = await asyncio.gather(*(batcher.submit([i]) for i in range(10)))
    assert results == [[i * 10] for i in range(10)]
    assert len(fn.batches) == 1  # all 10 were queued before the idle batcher cut
    assert sorted(fn.batches[0]) == list(range(10))
    batcher.close()


async def test_results_keep_each_requests_order_and_batches_are_bounded():
    fn = Recorder()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=4, max_wait_ms=1))
    requests = [list(range(start, start + 7)) for start in (0, 100, 200)]
    results = await asyncio.gather(*(batcher.submit(r) for r in requests))
    assert results == [[x * 10 for x in r] for r in requests]
    assert all(len(b) <= 4 for b in fn.batches)
    flat = [x for b in fn.batches for x in b]
    assert flat == [x for r in requests for x in r]  # FIFO across requests
    batcher.close()


async def test_full_batch_does_not_wait_for_the_timer():
    fn = Recorder()
    # A wait far longer than the test limit: only "batch full" can release it.
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=3, max_wait_ms=600_000))
    assert await asyncio.wait_for(batcher.submit([1, 2, 3]), 60) == [10, 20, 30]
    batcher.close()


async def test_model_runs_on_one_dedicated_thread():
    fn = Recorder()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=2, max_wait_ms=0), name="solo")
    await asyncio.gather(*(batcher.submit([i, i + 1]) for i in range(6)))
    assert len(fn.threads) == 1
    assert next(iter(fn.threads)).startswith("solo")
    batcher.close()


async def test_queue_bound_answers_429():
    fn = Recorder()
    settings = BatchSettings(max_batch_size=2, max_wait_ms=0, max_queue=4)
    batcher, first = await first_batch_held(fn, settings, [1, 2])
    queued = asyncio.ensure_future(batcher.submit([3, 4, 5, 6]))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await batcher.submit([7])
    assert info.value.status == 429
    assert "overloaded" in info.value.message
    fn.gate.set()
    assert await first == [10, 20]
    assert await queued == [30, 40, 50, 60]
    batcher.close()


async def test_an_exception_fails_only_the_requests_in_that_batch():
    fn = Recorder()
    fn.fail_when = 13
    fn.gate.clear()
    batcher = MicroBatcher(fn, BatchSettings(max_batch_size=2, max_wait_ms=0))
    ok_before = asyncio.ensure_future(batcher.submit([1, 2]))
    bad = asyncio.ensure_future(batcher.submit([13, 14]))
    ok_after = asyncio.ensure_future(batcher.submit([5, 6]))
    fn.gate.set()
    assert await ok_before == [10, 20]
    with pytest.raises(ValueError, match="bad item 13"):
        await bad
    assert await ok_after == [50, 60]
    # and the batcher keeps working
    assert await batcher.submit([7]) == [70]
    batcher.close()


async def test_wrong_result_count_is_an_error_not_a_misalignment():
    batcher = MicroBatcher(lambda items: items[:-1], BatchSettings(max_wait_ms=0))
    with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
        await batcher.submit([1, 2])
    batcher.close()


async def test_cancelled_request_items_are_skipped():
    fn = Recorder()
    batcher, first = await first_batch_held(
        fn, BatchSettings(max_batch_size=2, max_wait_ms=0), [1, 2]
    )
    gone = asyncio.ensure_future(batcher.submit([3, 4]))
    await asyncio.sleep(0)
    gone.cancel()
    kept = asyncio.ensure_future(batcher.submit([5, 6]))
    await asyncio.sleep(0)
    fn.gate.set()
    assert await first == [10, 20]
    assert await kept == [50, 60]
    assert [3, 4] not in fn.batches
    batcher.close()


async def test_close_fails_queued_requests_with_503():
    fn = Recorder()
    batcher, running = await first_batch_held(
        fn, BatchSettings(max_batch_size=1, max_wait_ms=0), [1]
    )
    queued = asyncio.ensure_future(batcher.submit([2]))
    await asyncio.sleep(0)
    batcher.close()
    fn.gate.set()
    with pytest.raises(EngineError) as info:
        await queued
    assert info.value.status == 503
    running.cancel()
    with pytest.raises(EngineError):
        await batcher.submit([3])


def test_settings_from_engine_options():
    s = BatchSettings.from_options({"max_batch_size": "8", "max_wait_ms": 2}, max_queue=99)
    assert s == BatchSettings(max_batch_size=8, max_wait_ms=2.0, max_queue=99)
    with pytest.raises(ValueError, match="max_batch_size >= 1"):
        BatchSettings.from_options({"max_batch_size": 0})
    with pytest.raises(ValueError, match="invalid batching option"):
        BatchSettings.from_options({"max_wait_ms": "soon"})


def handed_over(batcher: MicroBatcher[int, int], items: int) -> bool:
    """`items` wait in the model thread behind the running batch, none in the queue."""
    stats = batcher.stats()
    return stats["batches_in_model"] == 2 and stats["queue_depth"] == items


async def test_a_full_next_batch_starts_without_the_event_loop():
    """Under a backlog the model thread goes from one batch straight to the next: the full next
    batch is handed over while the first computes, so it starts even while the event loop is
    blocked (with the old collector it could only be cut after the loop took the first back)."""
    fn = Recorder()
    second = threading.Event()

    def model(items: list[int]) -> list[int]:
        if fn.batches:  # the first batch has returned: this call is the next batch's
            second.set()
        return fn(items)

    settings = BatchSettings(max_batch_size=2, max_wait_ms=0)
    batcher, first = await first_batch_held(fn, settings, [1, 2], model)
    rest = [asyncio.ensure_future(batcher.submit([i, i + 1])) for i in (3, 5)]
    await until(lambda: batcher.queue_depth == 4)  # [3, 4] in the model thread, [5, 6] queued
    fn.gate.set()
    assert second.wait(60)  # blocks the event loop: only the model thread can get here
    assert await first == [10, 20]
    assert [await r for r in rest] == [[30, 40], [50, 60]]
    assert fn.batches == [[1, 2], [3, 4], [5, 6]]  # never more than one batch waits
    assert batcher.stats()["busy_s"] > 0 and batcher.stats()["items_run"] == 6
    batcher.close()


async def test_a_request_gone_while_its_batch_waits_is_not_computed():
    fn = Recorder()
    batcher, first = await first_batch_held(
        fn, BatchSettings(max_batch_size=2, max_wait_ms=0), [1, 2]
    )
    gone = asyncio.ensure_future(batcher.submit([3]))
    kept = asyncio.ensure_future(batcher.submit([4]))
    await until(lambda: handed_over(batcher, 2))
    gone.cancel()
    await asyncio.sleep(0)
    fn.gate.set()
    assert await first == [10, 20]
    assert await kept == [40]
    assert fn.batches == [[1, 2], [4]]
    batcher.close()


async def test_close_fails_the_computing_and_the_waiting_batch():
    fn = Recorder()
    batcher, running = await first_batch_held(
        fn, BatchSettings(max_batch_size=1, max_wait_ms=0), [1]
    )
    waiting = asyncio.ensure_future(batcher.submit([2]))
    await until(lambda: handed_over(batcher, 1))
    batcher.close()
    fn.gate.set()
    for request in (running, waiting):
        with pytest.raises(EngineError) as info:
            await asyncio.wait_for(request, 60)
        assert info.value.status == 503
    assert batcher._executor is not None
    await asyncio.to_thread(batcher._executor.shutdown, True)  # the model thread has finished
    assert fn.batches == [[1]]  # the waiting batch never ran
