"""Chat through the gateway with the official openai client against a real fake upstream."""

from __future__ import annotations

import time

import httpx
import openai
import pytest


def test_chat_non_stream_and_stream(gateway, fake_upstream):
    gateway.add_channel(
        name="up", base_url=fake_upstream.url, key="sk-upstream", models="gpt-4o-mini"
    )
    client = gateway.openai(gateway.create_token(name="user"))

    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    assert r.choices[0].message.content == "Hello from the fake upstream. [up1]"
    assert r.usage.prompt_tokens == 11
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer sk-upstream"

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream. [up1]"


def test_unknown_fields_are_forwarded_untouched(gateway, fake_upstream):
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="m1")
    key = gateway.create_token()
    raw = b'{"model":"m1","messages":[{"role":"user","content":"x"}],"x_custom":{"a":[1,2]}}'
    r = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    assert fake_upstream.requests[-1].body["x_custom"] == {"a": [1, 2]}


def test_model_mapping(gateway, fake_upstream):
    gateway.add_channel(
        name="up",
        base_url=fake_upstream.url,
        models="gpt-4o",
        model_mapping='{"gpt-4o": "qwen-chat"}',
    )
    client = gateway.openai(gateway.create_token())
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert fake_upstream.requests[-1].body["model"] == "qwen-chat"


def test_unknown_model_lists_available(gateway, fake_upstream):
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="gpt-4o-mini,gpt-4o")
    client = gateway.openai(gateway.create_token())
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(
            model="gpt-4o-mni", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.code == "model_not_found"
    assert "gpt-4o-mini" in exc.value.message


def test_stream_usage_is_recorded_and_not_shown_when_not_asked(gateway, fake_upstream):
    gateway.add_channel(name="up", type=1, base_url=fake_upstream.url, models="m1")
    client = gateway.openai(gateway.create_token(name="u1"))
    chunks = list(
        client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)  # the injected usage-only chunk is not forwarded
    assert fake_upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    gateway.flush_usage()
    logs = gateway.api("GET", "/api/log/", params={"token_name": "u1"})
    assert logs[0]["is_stream"] and logs[0]["prompt_tokens"] == 11
    assert logs[0]["completion_tokens"] == 6


def test_a_client_leaving_mid_stream_releases_the_upstream_and_is_logged(gateway, fake_upstream):
    fake_upstream.reset(chunk_delay=5)  # the upstream would go on for a minute
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="m1")
    key = gateway.create_token(name="leaver")
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "m1", "messages": [{"role": "user", "content": "x"}], "stream": True},
        timeout=60,
    ) as resp:
        first = next(line for line in resp.iter_lines() if line.startswith("data:"))
    assert '"content"' in first
    # the gateway notices the hang-up and closes its upstream connection (bounded poll)
    deadline = time.monotonic() + 30
    while fake_upstream.abandoned == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_upstream.abandoned == 1
    gateway.flush_usage()
    rows = gateway.api("GET", "/api/log/", params={"token_name": "leaver"})
    assert len(rows) == 1 and "disconnected" in rows[0]["error"]
