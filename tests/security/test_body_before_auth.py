"""Attack: make the gateway take in a large body before it checks who is asking.

Before: FastAPI reads and spools a whole multipart form before it solves dependencies, so an
audio upload without a key was read to the end (up to 64 MiB) before its 401; and the body limit
followed the Content-Type, so `Content-Type: multipart/form-data` on a JSON route lifted its 8 MiB
limit to 64 MiB and the body was still parsed as JSON.
Now: the audio routes authenticate from the headers before reading any body (the raw-socket
client below sends the head only and gets the 401); a route's limit is the route's, whatever the
Content-Type says; a JSON route refuses a non-JSON Content-Type with 415 in OpenAI's error shape.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.security.raw_http import post_head_first

MiB = 1024 * 1024
MULTIPART = "multipart/form-data; boundary=----modelport"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.mark.parametrize("surface", ["transcriptions", "translations"])
@pytest.mark.parametrize("auth", [None, "Bearer sk-wrong-key-000000000000000000000000"])
def test_audio_upload_is_refused_from_the_headers_alone(gateway, surface, auth):
    headers = {"Content-Type": MULTIPART}
    if auth:
        headers["Authorization"] = auth
    answer = post_head_first(gateway.url, f"/v1/audio/{surface}", headers, declared_length=60 * MiB)
    assert answer.status == 401
    assert answer.body_bytes_sent == 0  # the 401 came before a single body byte was sent
    error = answer.json()["error"]
    assert error["code"] and error["message"]


def test_multipart_content_type_does_not_lift_a_json_routes_limit(gateway, fake_upstream):
    """20 MiB declared on a JSON route (limit 8 MiB) with a multipart Content-Type: 413 from the
    headers, before any body byte (it used to wait for up to 64 MiB)."""
    gateway.add_channel(name="up", base_url=f"{fake_upstream.url}/v1", key="k", models="m")
    key = gateway.create_token()
    answer = post_head_first(
        gateway.url,
        "/v1/chat/completions",
        {"Content-Type": MULTIPART, "Authorization": f"Bearer {key}"},
        declared_length=20 * MiB,
        wait_s=30,
    )
    assert answer.status == 413
    assert answer.body_bytes_sent == 0
    assert answer.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("ctype", [MULTIPART, "text/plain", "application/x-www-form-urlencoded"])
def test_json_route_refuses_a_non_json_content_type(gateway, fake_upstream, ctype):
    gateway.add_channel(name="up", base_url=f"{fake_upstream.url}/v1", key="k", models="m")
    key = gateway.create_token()
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=orjson.dumps(CHAT),
        headers={"Content-Type": ctype, "Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 415, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]
    assert fake_upstream.requests == []


@pytest.mark.parametrize("ctype", [None, "application/json", "application/json; charset=utf-8"])
def test_json_route_still_takes_json(gateway, fake_upstream, ctype):
    """JSON, with or without a charset, and no Content-Type at all (FastAPI's own reading)."""
    gateway.add_channel(name="up", base_url=f"{fake_upstream.url}/v1", key="k", models="m")
    key = gateway.create_token()
    headers = {"Authorization": f"Bearer {key}"}
    if ctype:
        headers["Content-Type"] = ctype
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions", content=orjson.dumps(CHAT), headers=headers
    )
    assert resp.status_code == 200, resp.text


def test_audio_upload_with_a_key_still_relays(gateway, fake_upstream):
    """The header-first check hands its caller to the route (no second lookup needed)."""
    gateway.add_channel(name="up", base_url=f"{fake_upstream.url}/v1", key="k", models="whisper")
    client = gateway.openai(gateway.create_token())
    text = client.audio.transcriptions.create(
        model="whisper", file=("a.wav", b"RIFF" + b"\0" * 5000, "audio/wav")
    )
    assert text.text == "transcribed 5004 bytes"
