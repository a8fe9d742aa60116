"""Property tests of the arithmetic that decides money and admission: prices to quota, batched
settlement, and the limiter's windows."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.billing.prices import QUOTA_PER_USD, Price
from gateway.billing.usage import UsageRecord, _Batch
from gateway.errors import RateLimited
from gateway.limits.base import WINDOW_S, Ask, window_of
from gateway.limits.memory import MemoryLimiter

prices = st.floats(min_value=0, max_value=1000, allow_nan=False, allow_infinity=False)
tokens = st.integers(min_value=0, max_value=2_000_000)


@given(prices, prices, tokens, tokens)
def test_quota_is_the_exact_cost_rounded_up(inp, out, p, c):
    q = Price(inp, out).quota(p, c)
    exact = (p * inp + c * out) / 1_000_000 * QUOTA_PER_USD
    assert q >= 0 and isinstance(q, int)
    assert exact - 1e-6 <= q < exact + 1 + 1e-6
    if Price(inp, out).free or p == c == 0:
        assert q == 0


@given(prices, prices, tokens, tokens, st.integers(0, 1000), st.integers(0, 1000))
def test_quota_is_monotonic(inp, out, p, c, dp, dc):
    price = Price(inp, out)
    assert price.quota(p + dp, c + dc) >= price.quota(p, c)


records = st.lists(
    st.tuples(
        st.integers(1, 4),  # token id
        st.booleans(),  # unlimited
        st.integers(0, 10_000),  # reserved
        st.integers(0, 10_000),  # charged
        st.integers(0, 3),  # channel id
    ),
    max_size=60,
)


@given(records)
def test_batch_settlement_charges_exactly_what_was_used(recs):
    batch = _Batch()
    remain_before_batch: dict[int, int] = {}
    used_before_batch: dict[int, int] = {}
    for tid, unlimited, reserved, charged, cid in recs:
        if not unlimited:  # the reservation moved `reserved` already, atomically, at request time
            remain_before_batch[tid] = remain_before_batch.get(tid, 0) - reserved
            used_before_batch[tid] = used_before_batch.get(tid, 0) + reserved
        batch.add(
            UsageRecord(
                log={},
                token_id=tid,
                unlimited=unlimited,
                reserved=reserved,
                charged=charged,
                channel_id=cid,
            )
        )
    for tid in {r[0] for r in recs}:
        charged_limited = sum(r[3] for r in recs if r[0] == tid and not r[1])
        charged_all = sum(r[3] for r in recs if r[0] == tid)
        remain = remain_before_batch.get(tid, 0) + batch.remain.get(tid, 0)
        used = used_before_batch.get(tid, 0) + batch.used.get(tid, 0)
        assert remain == -charged_limited  # reservations fully refunded or settled
        assert used == charged_all
    for cid in {r[4] for r in recs if r[4]}:
        assert batch.channel_used.get(cid, 0) == sum(r[3] for r in recs if r[4] == cid)
    assert len(batch) == len(recs)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


events = st.lists(
    st.tuples(
        st.floats(0, 30, allow_nan=False),  # seconds since the previous event
        st.integers(0, 400),  # token estimate
        st.integers(0, 400),  # real usage
        st.booleans(),  # release this request's slot right away
    ),
    max_size=80,
)


@settings(max_examples=200)
@given(
    events,
    st.integers(0, 6),
    st.integers(0, 1500),
    st.integers(0, 3),
    st.integers(0, 4),
)
def test_limiter_windows_never_admit_more_than_the_limits(evs, rpm, tpm, conc, gcap):
    clock = Clock()
    lim = MemoryLimiter(global_cap=gcap, clock=clock)
    admitted: dict[int, int] = {}
    held = []
    for dt, cost, actual, release_now in evs:
        clock.now += dt
        ask = Ask(token_id=1, name="t", rpm=rpm, tpm=tpm, max_concurrency=conc, cost=cost)
        try:
            lease = lim.acquire_now(ask)
        except RateLimited as exc:
            retry = exc.headers.get("Retry-After")
            if retry is not None:
                assert 1 <= int(retry) <= WINDOW_S
            continue
        win = window_of(clock.now)
        admitted[win] = admitted.get(win, 0) + 1
        requests, used, in_flight = lim.window_counts(1)
        if rpm:
            assert admitted[win] <= rpm and requests == admitted[win]
        if tpm:
            assert cost <= tpm and used <= tpm
        if conc:
            assert in_flight <= conc
        if gcap:
            assert lim.in_flight() <= gcap
        if lease is None:
            assert not (rpm or tpm or conc or gcap)
            continue
        lim.settle(lease, actual)
        lim.settle(lease, actual)  # idempotent
        if tpm:
            assert lim.window_counts(1)[1] <= max(tpm, used - cost + actual)
        if release_now:
            lim.release(lease)
        else:
            held.append(lease)
    for lease in held:
        lim.release(lease)
        lim.release(lease)  # idempotent
    assert lim.window_counts(1)[2] == 0 and lim.in_flight() == 0


@given(st.floats(0, 1e10, allow_nan=False))
def test_window_of(now):
    w = window_of(now)
    assert w <= now < w + WINDOW_S and w % WINDOW_S == 0
    assert math.isclose(window_of(w), w)
