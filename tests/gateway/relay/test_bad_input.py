"""Bad input gets a clear OpenAI-shaped error and never reaches an upstream."""

from __future__ import annotations

import gzip

import httpx
import pytest


@pytest.fixture
def ctx(make_gateway, fake_upstream):
    gw = make_gateway(max_body_bytes=10_000, max_upload_bytes=50_000)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token()
    return gw, key, fake_upstream


def post(gw, key, path, **kw):
    headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    return httpx.post(f"{gw.url}{path}", headers=headers, **kw)


def err(r):
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_malformed_json(ctx):
    gw, key, fake = ctx
    r = post(
        gw,
        key,
        "/v1/chat/completions",
        content=b'{"model": "m", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "not valid JSON" in err(r)["message"]
    assert not fake.requests


@pytest.mark.parametrize(
    "body,param",
    [
        ({"model": "m", "messages": "hello"}, "messages"),
        ({"model": "m"}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5},
            "max_tokens",
        ),
    ],
)
def test_wrong_types_name_the_parameter(ctx, body, param):
    gw, key, fake = ctx
    r = post(gw, key, "/v1/chat/completions", json=body)
    assert r.status_code == 400
    e = err(r)
    assert e["param"] == param and param in e["message"]
    assert not fake.requests


def test_oversized_json_body_declared(ctx):
    gw, key, fake = ctx
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 20_000}]}
    r = post(gw, key, "/v1/chat/completions", json=big)
    assert r.status_code == 413 and err(r)["code"] == "request_too_large"
    assert "10000 bytes" in err(r)["message"]
    assert not fake.requests


def test_oversized_chunked_body(ctx):
    gw, key, fake = ctx

    def gen():
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}]}'

    r = post(
        gw, key, "/v1/chat/completions", content=gen(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    assert not fake.requests


def test_oversized_upload(ctx):
    gw, key, fake = ctx
    r = post(
        gw,
        key,
        "/v1/audio/transcriptions",
        data={"model": "m"},
        files={"file": ("a.wav", b"\0" * 60_000, "audio/wav")},
    )
    assert r.status_code == 413 and "MODELPORT_MAX_UPLOAD_BYTES" in err(r)["message"]
    assert not fake.requests


def test_compressed_body_refused(ctx):
    gw, key, fake = ctx
    bomb = gzip.compress(b'{"model": "m", "messages": []}' + b" " * 5_000_000)
    r = post(
        gw,
        key,
        "/v1/chat/completions",
        content=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 415
    assert not fake.requests


def test_unknown_route_and_method(ctx):
    gw, key, _ = ctx
    r = post(gw, key, "/v1/nope", json={})
    assert r.status_code == 404 and "no such endpoint" in err(r)["message"]
    r = httpx.get(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 405


def test_request_id_is_returned(ctx):
    gw, key, _ = ctx
    r = post(
        gw,
        key,
        "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        headers={"X-Request-Id": "abc123"},
    )
    assert r.headers["x-request-id"] == "abc123"
    r = post(gw, key, "/v1/chat/completions", json={})
    assert len(r.headers["x-request-id"]) == 16
