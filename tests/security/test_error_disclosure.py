"""Attack: learn the gateway's internals from its error messages.

Before: a 502/504 to an sk- caller listed every channel tried with its name and the upstream's
URL ("every endpoint serving 'm' failed (1 tried): lan-gpu-3: cannot reach
http://10.0.0.7:8000/v1/chat/completions: ..."), mapping the private network behind the gateway.
Now the caller reads only what kind of failure each attempt was; names and addresses go to the
server log and the admin's usage row under the request id.
"""

from __future__ import annotations

import socket

import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]
NAME = "lan-gpu-secret-name"


def _dead_url() -> tuple[str, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1", port


def test_a_502_names_no_channel_host_or_url(gateway):
    url, port = _dead_url()
    gateway.add_channel(name=NAME, base_url=url, models="m")
    client = gateway.openai(gateway.create_token(name="c"))
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", messages=MSG)
    assert err.value.status_code == 502
    text = str(err.value.body)
    for secret in (NAME, "127.0.0.1", str(port), "http"):
        assert secret not in text, text
    assert "cannot reach the upstream" in text  # what kind of failure, still
    request_id = err.value.response.headers["x-request-id"]
    gateway.flush_usage()
    row = gateway.api("GET", "/api/log/", params={"token_name": "c"})[0]
    assert row["request_id"] == request_id
    assert NAME in row["error"] and str(port) in row["error"]  # the admin sees it all


def test_a_504_names_no_channel_host_or_url(gateway, fake_upstream):
    fake_upstream.reset(delay=30)
    gateway.add_channel(
        name=NAME, base_url=fake_upstream.url, models="m", config={"first_byte_timeout_s": 0.5}
    )
    client = gateway.openai(gateway.create_token(name="t"))
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="m", messages=MSG)
    assert err.value.status_code == 504
    text = str(err.value.body)
    for secret in (NAME, "127.0.0.1", str(fake_upstream.server.port), "http"):
        assert secret not in text, text
    assert "timed out" in text
