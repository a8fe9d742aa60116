"""Fault injection against real servers: what the client sees, where the request went, what was
charged, and the usage row each request leaves."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from gateway.billing.tokenizer import count_text

MSG = [{"role": "user", "content": "hi"}]
# 1 output token = 1000 quota units, prompt tokens free: charges are easy to read
PRICES = {"m": {"input": 0.0, "output": 2000.0}}
PER_TOKEN = 1000
START_QUOTA = 10_000_000


def _token(gw, name, **kw):
    return gw.create_token(name=name, unlimited_quota=False, remain_quota=START_QUOTA, **kw)


def _remain(gw, name):
    return gw.api("GET", "/api/token/", params={"keyword": name})[0]["remain_quota"]


def _logs(gw, name):
    gw.flush_usage()
    return gw.api("GET", "/api/log/", params={"token_name": name})


def _stream(client, **kw):
    got = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in client.chat.completions.create(model="m", messages=MSG, stream=True, **kw):
            if chunk.choices:
                got.append(chunk.choices[0].delta.content)
    return got, exc.value


def test_upstream_killed_mid_stream(make_gateway, dying_upstream):
    gw = make_gateway(prices=PRICES)
    gw.add_channel(name="dying", base_url=dying_upstream.url, models="m")
    client = gw.openai(_token(gw, "k", max_concurrency=1))
    got, err = _stream(client, max_tokens=50)
    assert got == ["w0 ", "w1 "]
    assert "failed mid-stream" in str(err)
    [row] = _logs(gw, "k")
    assert row["status"] == 200 and "interrupted" in row["error"]
    delivered = count_text("w0 ") + count_text("w1 ")  # counted locally: only what was sent
    assert row["completion_tokens"] == delivered
    assert row["quota"] == delivered * PER_TOKEN
    assert _remain(gw, "k") == START_QUOTA - delivered * PER_TOKEN  # reservation settled
    # the concurrency slot (limit 1) came back: a second request is admitted
    _stream(client, max_tokens=50)
    assert len(_logs(gw, "k")) == 2


def test_slow_first_byte_fails_over_then_times_out(make_gateway, fake_upstreams):
    slow, good = fake_upstreams("slow"), fake_upstreams("good")
    slow.reset(delay=30)
    gw = make_gateway(prices=PRICES)
    cfg = {"first_byte_timeout_s": 0.5}
    gw.add_channel(name="slow", base_url=slow.url, models="m", priority=10, config=cfg)
    good_ch = gw.add_channel(name="good", base_url=good.url, models="m")
    client = gw.openai(_token(gw, "k"))
    r = client.chat.completions.create(model="m", messages=MSG, max_tokens=20)
    assert r.choices[0].message.content.endswith("[good]")
    [row] = _logs(gw, "k")
    assert row["channel_name"] == "good" and row["retries"] == 1 and row["status"] == 200
    charged = row["quota"]
    assert charged == row["completion_tokens"] * PER_TOKEN
    # with the good channel gone, the client gets 504 and is charged nothing
    gw.api("DELETE", f"/api/channel/{good_ch['id']}")
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="m", messages=MSG, max_tokens=20)
    assert exc.value.status_code == 504
    rows = _logs(gw, "k")
    assert {r["status"] for r in rows} == {200, 504}
    assert _remain(gw, "k") == START_QUOTA - charged


def test_hung_stream_ends_with_idle_timeout_error(make_gateway, fake_upstream):
    fake_upstream.reset(chunk_delay=30)  # first chunk, then silence
    gw = make_gateway(prices=PRICES)
    gw.add_channel(
        name="hung",
        base_url=fake_upstream.url,
        models="m",
        config={"stream_idle_timeout_s": 0.5},
    )
    got, err = _stream(gw.openai(_token(gw, "k")), max_tokens=30)
    assert got == ["Hello "]
    assert "idle" in str(err)
    [row] = _logs(gw, "k")
    assert "idle" in row["error"] and row["completion_tokens"] == count_text("Hello ")
    assert _remain(gw, "k") == START_QUOTA - count_text("Hello ") * PER_TOKEN


def test_429_storm_passes_429_then_circuit_opens(make_gateway, fake_upstreams):
    a, b = fake_upstreams("a"), fake_upstreams("b")
    for f in (a, b):
        f.reset(status=429, error_message="slow down")
    gw = make_gateway(prices=PRICES, circuit_threshold=2, circuit_cooldown_s=600, retries=1)
    gw.add_channel(name="a", base_url=a.url, models="m")
    gw.add_channel(name="b", base_url=b.url, models="m")
    client = gw.openai(_token(gw, "k"))
    for _ in range(2):  # each request tries both: two failures each opens both circuits
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=MSG, max_tokens=10)
    sent = len(a.requests) + len(b.requests)
    assert sent == 4
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="m", messages=MSG, max_tokens=10)
    assert exc.value.status_code == 503
    assert int(exc.value.response.headers["retry-after"]) > 0
    assert len(a.requests) + len(b.requests) == sent  # open circuits: nothing was sent
    rows = _logs(gw, "k")
    assert sorted(r["status"] for r in rows) == [429, 429, 503]
    assert all(r["quota"] == 0 for r in rows)
    assert _remain(gw, "k") == START_QUOTA  # every reservation refunded
    states = {c["state"] for c in gw.api("GET", "/api/health/circuits")}
    assert states == {"open"}
    metrics = gw.admin.get("/metrics").text
    assert 'modelport_circuit_state{endpoint="' in metrics and "} 2.0" in metrics


def test_500_burst_fails_over_and_circuit_skips_the_bad_channel(make_gateway, fake_upstreams):
    bad, good = fake_upstreams("bad"), fake_upstreams("good")
    bad.reset(status=500)
    gw = make_gateway(circuit_threshold=3, circuit_cooldown_s=600)
    gw.add_channel(name="bad", base_url=bad.url, models="m", priority=10)
    gw.add_channel(name="good", base_url=good.url, models="m")
    client = gw.openai(gw.create_token(name="k"))
    for _ in range(8):
        r = client.chat.completions.create(model="m", messages=MSG)
        assert r.choices[0].message.content.endswith("[good]")
    assert len(bad.requests) == 3  # then the circuit opened and traffic skipped it
    rows = _logs(gw, "k")
    assert len(rows) == 8 and all(r["status"] == 200 and r["channel_name"] == "good" for r in rows)
    assert sorted(r["retries"] for r in rows) == [0] * 5 + [1] * 3


def test_half_open_probe_closes_the_circuit_after_recovery(make_gateway, fake_upstream):
    fake_upstream.reset(status=500, fail_times=2)
    gw = make_gateway(circuit_threshold=2, circuit_cooldown_s=0.5, retries=0)
    gw.add_channel(name="flaky", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token(name="k"))
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MSG)
    with pytest.raises(openai.APIStatusError) as exc:  # open: refused without a request
        client.chat.completions.create(model="m", messages=MSG)
    assert exc.value.status_code == 503 and len(fake_upstream.requests) == 2
    deadline = time.monotonic() + 30
    while gw.api("GET", "/api/health/circuits")[0]["state"] == "open":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = client.chat.completions.create(model="m", messages=MSG)  # the probe, which succeeds
    assert r.choices[0].message.content.endswith("[up1]")
    assert gw.api("GET", "/api/health/circuits") == []  # closed circuits are forgotten


def test_endpoint_leaving_routing_mid_stream_does_not_break_it(make_gateway, fake_upstream):
    fake_upstream.reset(chunk_delay=0.1)
    gw = make_gateway()
    ch = gw.add_channel(name="gone", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="k")
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m", "messages": MSG, "stream": True},
        timeout=30,
    ) as resp:
        lines = resp.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        gw.api("DELETE", f"/api/channel/{ch['id']}")  # routing forgets the endpoint mid-stream
        rest = [line for line in lines if line]
    assert "Hello" in first and rest[-1] == "data: [DONE]"
    with pytest.raises(openai.NotFoundError):
        gw.openai(key).chat.completions.create(model="m", messages=MSG)
    rows = _logs(gw, "k")
    assert sorted(r["status"] for r in rows) == [200, 404]
