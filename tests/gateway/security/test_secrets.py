"""Keys, tokens and prompts stay out of logs and API output; channel keys survive key rotation;
the access log line says who/what/where without secrets."""

from __future__ import annotations

import logging
import time

import httpx
import openai
import orjson
import pytest
from cryptography.fernet import Fernet

from gateway.logging import ACCESS_LOGGER, JsonFormatter

CHANNEL_KEY = "sk-channel-SECRET-0123456789abcdef"
PROMPT = "my PROMPT-SECRET-42 is here"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def access_lines(self, request_id: str, limit_s: float = 10.0) -> list[dict]:
        """The access lines of one request; the server writes them after the response is sent,
        so this polls for a bounded time (not a timing assertion)."""
        deadline = time.monotonic() + limit_s
        while True:
            found = [orjson.loads(line) for line in self.lines if request_id in line]
            access = [obj for obj in found if obj["logger"] == ACCESS_LOGGER]
            if access or time.monotonic() > deadline:
                return access
            time.sleep(0.02)


@pytest.fixture
def logs():
    handler = Collect()
    # everything the server side logs (the test's own openai client logs the prompt at DEBUG,
    # so the root logger is captured at WARNING only)
    names = ("modelport", "uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp")
    loggers = [logging.getLogger(n) for n in names]
    old = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    for lg, level in old:
        lg.removeHandler(handler)
        lg.setLevel(level)
    root.removeHandler(handler)


def test_no_secret_in_logs_or_api_output(make_gateway, fake_upstreams, logs, capfd):
    ok, bad = fake_upstreams("ok"), fake_upstreams("bad")
    bad.reset(status=401, error_message="invalid_api_key")
    gw = make_gateway()
    gw.add_channel(name="bad", key=CHANNEL_KEY, base_url=bad.url, models="m", priority=5)
    ch = gw.add_channel(name="ok", key=CHANNEL_KEY, base_url=ok.url, models="m")
    plain = gw.create_token(name="plain")
    logged = gw.create_token(name="logged", log_content=True)
    for key in (plain, logged):
        client = gw.openai(key)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}])
        list(
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": PROMPT}], stream=True
            )
        )
    with pytest.raises(openai.AuthenticationError):
        gw.openai("sk-" + "x" * 40).models.list()
    with pytest.raises(openai.NotFoundError):
        gw.openai(plain).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": PROMPT}]
        )
    gw.flush_usage()
    # the upstream did get the key
    assert ok.requests[0].headers["authorization"] == f"Bearer {CHANNEL_KEY}"

    out, err = capfd.readouterr()
    text = "\n".join(logs.lines) + out + err
    assert "POST /v1/chat/completions" in text  # we did capture the access lines
    for secret in (CHANNEL_KEY, plain, logged, plain[3:], logged[3:], "PROMPT-SECRET-42", "x" * 40):
        assert secret not in text, secret

    # API output never carries the channel key
    for path in ("/api/channel/", f"/api/channel/{ch['id']}", "/api/channel/search"):
        body = gw.admin.get(path, params={"keyword": ""}).text
        assert CHANNEL_KEY not in body and CHANNEL_KEY[3:20] not in body
    tokens = gw.admin.get("/api/token/").text
    assert plain not in tokens and logged not in tokens

    # prompt text only in the usage rows of the token that asked for it
    rows = gw.api("GET", "/api/log/", params={"page_size": 50})
    assert all(PROMPT not in r["content"] for r in rows if r["token_name"] == "plain")
    assert any(PROMPT in r["content"] for r in rows if r["token_name"] == "logged")


def test_access_line_fields(make_gateway, fake_upstream, logs):
    gw = make_gateway()
    gw.add_channel(name="chan", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="alice")
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "x-request-id": "req-abc-123"},
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.headers["x-request-id"] == "req-abc-123"
    access = logs.access_lines("req-abc-123")
    assert len(access) == 1
    a = access[0]
    assert (a["token"], a["model"], a["channel"], a["status"]) == ("alice", "m", "chan", 200)
    assert a["latency_ms"] >= 0 and a["path"] == "/v1/chat/completions"


def test_rotation_keeps_old_keys_readable_and_re_encrypts(make_gateway, fake_upstream, tmp_path):
    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    home = tmp_path / "home"
    msg = [{"role": "user", "content": "hi"}]

    a = make_gateway(home=home, secret_key=k1)
    a.add_channel(name="up", key=CHANNEL_KEY, base_url=fake_upstream.url, models="m")
    token = a.create_token(name="t")
    a.stop()

    b = make_gateway(home=home, secret_key=k2, old_secret_keys=[k1])  # old key still decrypts
    b.openai(token).chat.completions.create(model="m", messages=msg)
    assert fake_upstream.requests[-1].headers["authorization"] == f"Bearer {CHANNEL_KEY}"
    assert b.api("POST", "/api/secret/rotate") == {"rotated": 1}
    b.stop()

    c = make_gateway(home=home, secret_key=k2)  # the old key is no longer needed
    c.openai(token).chat.completions.create(model="m", messages=msg)
    assert fake_upstream.requests[-1].headers["authorization"] == f"Bearer {CHANNEL_KEY}"
    # and a wrong key set makes rotation refuse instead of writing garbage
    import asyncio

    from gateway.auth.secrets import SecretBox
    from gateway.security.rotation import rotate_channel_keys

    wrong = SecretBox(Fernet.generate_key().decode())
    with pytest.raises(ValueError, match="cannot be decrypted"):
        asyncio.run_coroutine_threadsafe(
            rotate_channel_keys(c.app.state.services.sessions, wrong), c.server.server_loop
        ).result(10)
    c.openai(token).chat.completions.create(model="m", messages=msg)  # nothing was rewritten
