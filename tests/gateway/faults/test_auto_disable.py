"""Auto-disable on upstream credential/billing errors, and re-enable by the periodic tests."""

from __future__ import annotations

import asyncio

import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]


def _run(gw, coro):
    return asyncio.run_coroutine_threadsafe(coro, gw.server.server_loop).result(30)


def _channel(gw, cid):
    return gw.api("GET", f"/api/channel/{cid}")


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (401, "Incorrect API key provided", "invalid_api_key"),
        (429, "You exceeded your current quota, please check your plan", "insufficient_quota"),
        (403, "insufficient_quota", None),
        (402, "Your credit balance is too low", None),
    ],
)
def test_credential_errors_disable_the_channel_and_fail_over(
    make_gateway, fake_upstreams, status, message, code
):
    bad, good = fake_upstreams("bad"), fake_upstreams("good")
    bad.reset(status=status, error_message=message, error_code=code)
    gw = make_gateway(channel_test_interval_s=0)
    ch = gw.add_channel(name="bad", base_url=bad.url, models="m", priority=10)
    gw.add_channel(name="good", base_url=good.url, models="m")
    client = gw.openai(gw.create_token())
    for _ in range(3):
        r = client.chat.completions.create(model="m", messages=MSG)
        assert r.choices[0].message.content.endswith("[good]")
    assert len(bad.requests) == 1  # out of routing at once
    _run(gw, gw.app.state.services.monitor.close())  # the status write has landed
    row = _channel(gw, ch["id"])
    assert row["status"] == 3 and "auto-disabled" in row["last_error"]


def test_a_plain_400_or_500_does_not_disable(make_gateway, fake_upstream):
    gw = make_gateway(channel_test_interval_s=0)
    ch = gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token())
    for status in (400, 500):
        fake_upstream.reset(status=status, error_message="something else went wrong")
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="m", messages=MSG)
    assert _channel(gw, ch["id"])["status"] == 1


def test_only_channel_with_bad_key_passes_the_upstream_answer_on(make_gateway, fake_upstream):
    fake_upstream.reset(status=401, error_message="invalid_api_key")
    gw = make_gateway(channel_test_interval_s=0)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token())
    with pytest.raises(openai.AuthenticationError) as exc:
        client.chat.completions.create(model="m", messages=MSG)
    assert "invalid_api_key" in exc.value.message
    with pytest.raises(openai.NotFoundError):  # disabled: the model has no channel left
        client.chat.completions.create(model="m", messages=MSG)
    assert len(fake_upstream.requests) == 1


def test_channel_opt_out_of_auto_disable(make_gateway, fake_upstream):
    fake_upstream.reset(status=401, error_message="invalid_api_key")
    gw = make_gateway(channel_test_interval_s=0)
    ch = gw.add_channel(
        name="up", base_url=fake_upstream.url, models="m", config={"auto_disable": False}
    )
    with pytest.raises(openai.AuthenticationError):
        gw.openai(gw.create_token()).chat.completions.create(model="m", messages=MSG)
    assert _channel(gw, ch["id"])["status"] == 1


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gpt-x", "/v1/chat/completions"),
        ("bge-small-embed", "/v1/embeddings"),
        ("bge-reranker", "/v1/rerank"),
        ("whisper-1", "/v1/audio/transcriptions"),
    ],
)
def test_periodic_test_re_enables_with_the_right_api(make_gateway, fake_upstream, model, path):
    fake_upstream.reset(status=401, error_message="invalid_api_key")
    gw = make_gateway(channel_test_interval_s=0)
    ch = gw.add_channel(name="up", base_url=fake_upstream.url, models=model)
    client = gw.openai(gw.create_token())
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model=model, messages=MSG)
    monitor = gw.app.state.services.monitor
    _run(gw, monitor.close())
    assert _channel(gw, ch["id"])["status"] == 3
    results = _run(gw, monitor.retest_disabled())  # still failing: stays disabled
    assert not results[ch["id"]].success and _channel(gw, ch["id"])["status"] == 3
    fake_upstream.reset()  # the operator fixed the key upstream
    results = _run(gw, monitor.retest_disabled())
    assert results[ch["id"]].success
    assert fake_upstream.requests[-1].path == path
    assert _channel(gw, ch["id"])["status"] == 1
    assert model in gw.app.state.services.routes.models("default")


def test_manually_disabled_channels_are_never_re_enabled(make_gateway, fake_upstream):
    gw = make_gateway(channel_test_interval_s=0)
    ch = gw.add_channel(name="up", base_url=fake_upstream.url, models="m", status=2)
    assert _run(gw, gw.app.state.services.monitor.retest_disabled()) == {}
    assert _channel(gw, ch["id"])["status"] == 2
    assert fake_upstream.requests == []


def test_monitor_loop_runs_on_its_interval(make_gateway, fake_upstream):
    import time

    fake_upstream.reset(status=401, error_message="invalid_api_key", fail_times=1)
    gw = make_gateway(channel_test_interval_s=0.2)
    ch = gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    with pytest.raises(openai.APIStatusError):
        gw.openai(gw.create_token()).chat.completions.create(model="m", messages=MSG)
    monitor = gw.app.state.services.monitor
    deadline = time.monotonic() + 30
    while monitor.enabled_total < 1:  # disabled, then re-tested and re-enabled by the loop
        assert time.monotonic() < deadline, "the monitor never re-enabled the channel"
        time.sleep(0.1)
    assert monitor.disabled_total == 1 and _channel(gw, ch["id"])["status"] == 1
