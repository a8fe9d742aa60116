"""gateway.cluster.shared_read: what a request for an unrouted model pays before its 404/503.

Every caller must see a read that began after its call (else a channel added a moment ago is
refused), and a burst of callers (an attacker spamming unknown model names) must share reads
instead of costing the database one each."""

from __future__ import annotations

import asyncio

from gateway.cluster.shared_read import SharedRead


def test_a_burst_of_callers_shares_reads_and_each_sees_one_begun_after_its_call():
    async def main() -> tuple[int, int]:
        reads = 0
        gate = asyncio.Event()

        async def read() -> None:
            nonlocal reads
            reads += 1
            await gate.wait()

        shared = SharedRead(read)
        first = asyncio.create_task(shared())
        await asyncio.sleep(0)  # the first read is in flight
        burst = [asyncio.create_task(shared()) for _ in range(50)]
        await asyncio.sleep(0)
        seen_at_burst = reads
        gate.set()
        await asyncio.gather(first, *burst)
        return reads, seen_at_burst

    reads, seen_at_burst = asyncio.run(main())
    assert seen_at_burst == 1
    # the burst arrived while read 1 ran: it may not trust read 1, and shares read 2
    assert reads == 2


def test_a_failed_read_is_raised_and_the_next_caller_reads_again():
    async def main() -> int:
        calls = 0

        async def read() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError("database unreachable")

        shared = SharedRead(read)
        try:
            await shared()
        except OSError:
            pass
        else:
            raise AssertionError("the failure was swallowed")
        await shared()
        return calls

    assert asyncio.run(main()) == 2
