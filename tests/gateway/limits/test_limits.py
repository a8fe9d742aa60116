"""Per-token RPM/TPM/concurrency and the global cap, through real gateways, in memory and in
Redis (shared by two gateways).

RPM/TPM count in one-minute wall-clock windows; the tests that fill a window freeze the limiter's
clock (`frozen_windows`), so a minute rolling over mid-burst cannot hand them a fresh window.
"""

from __future__ import annotations

import asyncio
import secrets
import threading

import httpx
import openai
import pytest

from gateway.limits.base import WINDOW_S, window_of
from tests.conftest import REDIS_URL
from tests.support.polling import ManualClock

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    if request.param == "memory":
        return {}
    return {"redis_url": REDIS_URL, "redis_prefix": f"mptest-{secrets.token_hex(4)}"}


def frozen_windows(*gateways, into_window_s: float = 15.0) -> ManualClock:
    """Stop the limiters' clock `into_window_s` seconds into a window; the test moves it."""
    clock = ManualClock(window_of(ManualClock().now) + into_window_s)
    for gw in gateways:
        gw.app.state.services.limiter.clock = clock
    return clock


def _refused(fn):
    with pytest.raises(openai.RateLimitError) as exc:
        fn()
    err = exc.value
    assert err.body["type"] == "rate_limit_error" or err.body.get("code")
    return err


def test_rpm_refuses_with_retry_after(make_gateway, fake_upstream, backend):
    gw = make_gateway(**backend)
    clock = frozen_windows(gw)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token(name="r", rpm=2))
    for _ in range(2):
        client.chat.completions.create(model="m", messages=MSG)
    err = _refused(lambda: client.chat.completions.create(model="m", messages=MSG))
    assert err.status_code == 429 and "2 requests per minute" in err.message
    assert int(err.response.headers["retry-after"]) == WINDOW_S - 15  # when the window ends
    assert err.body["code"] == "rate_limit_exceeded"
    assert len(fake_upstream.requests) == 2
    # another token is not affected
    gw.openai(gw.create_token(name="other", rpm=2)).chat.completions.create(model="m", messages=MSG)
    clock.advance(WINDOW_S)  # the next window admits the token again
    client.chat.completions.create(model="m", messages=MSG)


def test_tpm_reserves_the_estimate_and_settles_to_real_usage(make_gateway, fake_upstream, backend):
    gw = make_gateway(**backend)
    frozen_windows(gw)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token(name="t", tpm=300))
    # estimate ~ prompt + 200 > what is left after settling? real usage is ~17 tokens each
    for _ in range(5):
        client.chat.completions.create(model="m", messages=MSG, max_tokens=200)
    # a request whose estimate alone exceeds the limit can never pass: a clear 429 without
    # a misleading Retry-After
    err = _refused(lambda: client.chat.completions.create(model="m", messages=MSG, max_tokens=1000))
    assert "lower max_tokens" in err.message and "retry-after" not in err.response.headers


def test_tpm_window_fills_up(make_gateway, fake_upstream, backend):
    gw = make_gateway(**backend)
    frozen_windows(gw)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token(name="t", tpm=60))
    served = 0
    with pytest.raises(openai.RateLimitError) as exc:
        for _ in range(20):  # ~17 real tokens each, reserved ~prompt+10 then settled
            client.chat.completions.create(model="m", messages=MSG, max_tokens=10)
            served += 1
    assert 2 <= served <= 4, served
    assert "tokens per minute" in exc.value.message


def _stream_in_background(gw, key, started: threading.Event, results: list):
    def run():
        with httpx.stream(
            "POST",
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "m", "messages": MSG, "stream": True},
            timeout=60,
        ) as resp:
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    started.set()
                    results.append(line)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_concurrency_slot_held_by_a_stream_and_released_at_its_end(
    make_gateway, fake_upstream, backend
):
    fake_upstream.reset(chunk_delay=0.2)
    gw = make_gateway(**backend)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="c", max_concurrency=1)
    client = gw.openai(key)
    started, lines = threading.Event(), []
    t = _stream_in_background(gw, key, started, lines)
    assert started.wait(30)
    err = _refused(lambda: client.chat.completions.create(model="m", messages=MSG))
    assert "concurrency limit" in err.message
    t.join(60)
    assert lines[-1] == "data: [DONE]"
    fake_upstream.reset()
    # the slot is freed before the client sees [DONE]: the next request is admitted at once
    client.chat.completions.create(model="m", messages=MSG)


def test_client_disconnect_releases_the_slot(make_gateway, fake_upstream, backend):
    fake_upstream.reset(chunk_delay=5)
    gw = make_gateway(**backend)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="c", max_concurrency=1)
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": MSG, "stream": True},
        timeout=60,
    ) as resp:
        next(line for line in resp.iter_lines() if line.startswith("data:"))
    # the client hung up mid-stream; the slot must come back (poll: the server notices async)
    fake_upstream.reset()
    client = gw.openai(key)
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            client.chat.completions.create(model="m", messages=MSG)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "slot never released after the disconnect"
            time.sleep(0.1)
    gw.flush_usage()
    rows = gw.api("GET", "/api/log/", params={"token_name": "c"})
    assert any("disconnected" in r["error"] for r in rows)


def test_error_paths_release_the_slot(make_gateway, fake_upstream, backend):
    fake_upstream.reset(status=500)
    gw = make_gateway(**backend)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token(name="c", max_concurrency=1))
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MSG)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MSG)
    assert gw.app.state.services.limiter.in_flight() == 0


def test_global_cap(make_gateway, fake_upstream, backend):
    fake_upstream.reset(chunk_delay=0.2)
    gw = make_gateway(max_concurrent_requests=1, **backend)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="a")
    started, lines = threading.Event(), []
    t = _stream_in_background(gw, key, started, lines)
    assert started.wait(30)
    other = gw.openai(gw.create_token(name="b"))  # a different token hits the same cap
    err = _refused(lambda: other.chat.completions.create(model="m", messages=MSG))
    assert err.body["code"] == "server_busy"
    t.join(60)
    fake_upstream.reset()
    other.chat.completions.create(model="m", messages=MSG)


def test_redis_counters_are_shared_by_replicas(pg_url, make_gateway, fake_upstream):
    shared = {
        "redis_url": REDIS_URL,
        "redis_prefix": f"mptest-{secrets.token_hex(4)}",
        "database_url": pg_url,
    }
    a = make_gateway(**shared)
    b = make_gateway(**shared)
    frozen_windows(a, b)
    a.add_channel(name="up", base_url=fake_upstream.url, models="m")
    asyncio.run_coroutine_threadsafe(
        b.app.state.services.changes.routes_changed(), b.server.server_loop
    ).result(10)
    key = a.create_token(name="r", rpm=3)
    for gw in (a, b, a):
        gw.openai(key).chat.completions.create(model="m", messages=MSG)
    _refused(lambda: b.openai(key).chat.completions.create(model="m", messages=MSG))
