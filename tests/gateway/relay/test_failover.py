"""Retries and failover: what the client sees when upstreams fail, and where requests went."""

from __future__ import annotations

import collections
import socket

import openai
import pytest

from tests.support.servers import free_port

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_fails_over_on_5xx_and_429(gateway, fake_upstreams, status):
    bad, good = fake_upstreams("bad"), fake_upstreams("good")
    bad.reset(status=status)
    gateway.add_channel(name="bad", base_url=bad.url, models="m", priority=10)
    gateway.add_channel(name="good", base_url=good.url, models="m", priority=0)
    client = gateway.openai(gateway.create_token())
    r = client.chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content.endswith("[good]")
    assert len(bad.requests) == 1 and len(good.requests) == 1


def test_no_retry_on_400(gateway, fake_upstreams):
    bad, good = fake_upstreams("bad"), fake_upstreams("good")
    bad.reset(status=400, error_message="bad parameter x")
    gateway.add_channel(name="bad", base_url=bad.url, models="m", priority=10)
    gateway.add_channel(name="good", base_url=good.url, models="m", priority=0)
    client = gateway.openai(gateway.create_token())
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="m", messages=MSG)
    assert "bad parameter x" in str(exc.value)
    assert len(good.requests) == 0


def test_fails_over_when_connection_refused(gateway, fake_upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    gateway.add_channel(name="dead", base_url=dead, models="m", priority=10)
    gateway.add_channel(name="ok", base_url=fake_upstream.url, models="m")
    r = gateway.openai(gateway.create_token()).chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content.endswith("[up1]")


def test_fails_over_when_upstream_hangs(gateway, fake_upstreams):
    slow, good = fake_upstreams("slow"), fake_upstreams("good")
    slow.reset(delay=30)
    gateway.add_channel(
        name="slow",
        base_url=slow.url,
        models="m",
        priority=10,
        config={"first_byte_timeout_s": 0.5},
    )
    gateway.add_channel(name="good", base_url=good.url, models="m")
    r = gateway.openai(gateway.create_token()).chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content.endswith("[good]")


def test_all_fail_gives_gateway_error_with_reason(gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        gateway.add_channel(name="dead", base_url=dead, models="m")
        client = gateway.openai(gateway.create_token())
        with pytest.raises(openai.APIStatusError) as exc:
            client.chat.completions.create(model="m", messages=MSG)
    assert exc.value.status_code == 502
    assert "cannot reach" in exc.value.message


def test_never_retries_the_endpoint_that_just_failed(gateway, fake_upstreams):
    a, b, c = fake_upstreams("a"), fake_upstreams("b"), fake_upstreams("c")
    for f in (a, b):
        f.reset(status=500)
    for name, f in (("a", a), ("b", b), ("c", c)):
        gateway.add_channel(name=name, base_url=f.url, models="m", priority=5)
    client = gateway.openai(gateway.create_token())
    for _ in range(10):  # retries=2: 3 attempts, each on a different endpoint, in random order
        for f in (a, b, c):
            f.requests.clear()
        r = client.chat.completions.create(model="m", messages=MSG)
        assert r.choices[0].message.content.endswith("[c]")
        assert len(a.requests) <= 1 and len(b.requests) <= 1 and len(c.requests) == 1


def test_priority_tiers_and_weights(gateway, fake_upstreams):
    hi1, hi3, lo = fake_upstreams("hi1"), fake_upstreams("hi3"), fake_upstreams("lo")
    gateway.add_channel(name="hi1", base_url=hi1.url, models="m", priority=5, weight=1)
    gateway.add_channel(name="hi3", base_url=hi3.url, models="m", priority=5, weight=3)
    gateway.add_channel(name="lo", base_url=lo.url, models="m", priority=0, weight=100)
    client = gateway.openai(gateway.create_token())
    counts = collections.Counter()
    for _ in range(200):
        r = client.chat.completions.create(model="m", messages=MSG)
        counts[r.choices[0].message.content.rsplit("[", 1)[1].rstrip("]")] += 1
    assert counts["lo"] == 0
    # weights 1:3 -> ~50 vs ~150; binomial(200, 0.25) stays within 25..75 with overwhelming odds
    assert 25 <= counts["hi1"] <= 75, counts


def test_stream_cut_midway_ends_with_error_event(gateway, fake_upstream):
    fake_upstream.reset(cut_after=2)
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gateway.openai(gateway.create_token(name="cut"))
    got = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in client.chat.completions.create(model="m", messages=MSG, stream=True):
            got.append(chunk.choices[0].delta.content)
    assert got == ["Hello ", "from "]
    assert "incomplete" in str(exc.value)
    gateway.flush_usage()
    log = gateway.api("GET", "/api/log/", params={"token_name": "cut"})[0]
    assert "ended" in log["error"] and log["completion_tokens"] > 0


def test_stream_fails_over_before_first_byte(gateway, fake_upstreams):
    bad, good = fake_upstreams("bad"), fake_upstreams("good")
    bad.reset(cut_after=0)  # closes the stream before sending anything
    gateway.add_channel(name="bad", base_url=bad.url, models="m", priority=9)
    gateway.add_channel(name="good", base_url=good.url, models="m")
    client = gateway.openai(gateway.create_token())
    chunks = list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks).endswith("[good]")
