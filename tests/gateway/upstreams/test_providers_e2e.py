"""Anthropic and Gemini channels end to end: the openai client talks to the gateway, which talks
to real HTTP servers speaking each provider's wire format, through litellm."""

from __future__ import annotations

import openai
import pytest

from tests.support.fake_anthropic import start_fake_anthropic
from tests.support.fake_gemini import start_fake_gemini

MSG = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


@pytest.fixture
def anthropic_fake():
    with start_fake_anthropic() as fake:
        yield fake


@pytest.fixture
def gemini_fake():
    with start_fake_gemini() as fake:
        yield fake


def test_anthropic_channel(gateway, anthropic_fake):
    gateway.add_channel(
        name="claude",
        type=14,
        base_url=anthropic_fake.url,
        key=anthropic_fake.api_key,
        models="claude",
        model_mapping='{"claude": "claude-3-5-haiku-20241022"}',
    )
    client = gateway.openai(gateway.create_token(name="a"))
    r = client.chat.completions.create(model="claude", messages=MSG, max_tokens=50)
    assert r.choices[0].message.content == "Hello from the fake."
    sent = anthropic_fake.requests[-1].body
    assert sent["model"] == "claude-3-5-haiku-20241022" and sent["system"]
    chunks = list(
        client.chat.completions.create(model="claude", messages=MSG, max_tokens=50, stream=True)
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Hello from the fake."
    )
    gateway.flush_usage()
    logs = gateway.api("GET", "/api/log/", params={"token_name": "a"})
    assert all(lg["status"] == 200 and lg["completion_tokens"] > 0 for lg in logs)


def test_anthropic_overloaded_fails_over_to_openai_compatible(
    gateway, anthropic_fake, fake_upstream
):
    anthropic_fake.set_behaviour(status=529)
    gateway.add_channel(
        name="claude",
        type=14,
        base_url=anthropic_fake.url,
        key=anthropic_fake.api_key,
        models="m",
        priority=5,
    )
    gateway.add_channel(name="backup", base_url=fake_upstream.url, models="m")
    r = gateway.openai(gateway.create_token()).chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content.endswith("[up1]")


def test_anthropic_bad_key_is_401_without_leaking_it(gateway, anthropic_fake):
    gateway.add_channel(
        name="claude",
        type=14,
        base_url=anthropic_fake.url,
        key="sk-ant-wrong-secret-key",
        models="claude",
    )
    with pytest.raises(openai.AuthenticationError) as exc:
        gateway.openai(gateway.create_token()).chat.completions.create(model="claude", messages=MSG)
    assert "sk-ant-wrong-secret-key" not in str(exc.value)


def test_gemini_channel(gateway, gemini_fake):
    gateway.add_channel(
        name="gem",
        type=24,
        base_url=gemini_fake.url,
        key=gemini_fake.api_key,
        models="gemini-2.0-flash",
    )
    client = gateway.openai(gateway.create_token())
    r = client.chat.completions.create(model="gemini-2.0-flash", messages=MSG)
    assert r.choices[0].message.content
    chunks = list(
        client.chat.completions.create(model="gemini-2.0-flash", messages=MSG, stream=True)
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == r.choices[0].message.content
    )
