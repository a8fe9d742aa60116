"""One bad string must not stop usage recording (issue 20).

PostgreSQL refuses a NUL in text, so a usage row holding one used to fail its whole batch on every
retry: the replica wrote no usage and no quota settlement again. The edge now refuses control
characters in the model name with a 400, and the usage writer drops only a row the database
refuses, keeping its settlement and every other row.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import psycopg
import pytest

from gateway.billing.usage import UsageRecord, UsageWriter
from gateway.db.engine import make_engine, make_sessionmaker, upgrade
from gateway.db.tables import Token

MSG = [{"role": "user", "content": "hi"}]


def _poll(check: Any, bound_s: float = 10.0) -> Any:
    deadline = time.monotonic() + bound_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.mark.parametrize("bad", ["m\x00", "m\x00x", "m\nx", "m\x1bx", "m\x7f"])
def test_control_characters_in_model_are_refused_and_usage_keeps_flowing(
    make_gateway, fake_upstream, pg_url, bad
):
    gw = make_gateway(database_url=pg_url)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="t")
    client = gw.openai(key)

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=bad, messages=MSG)
    assert refused.value.body["param"] == "model"
    assert refused.value.body["type"] == "invalid_request_error"
    for path, body in [
        ("/v1/embeddings", {"model": bad, "input": "hi"}),
        ("/v1/completions", {"model": bad, "prompt": "hi"}),
    ]:
        r = httpx.post(
            gw.url + path, headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
        )
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["param"] == "model", r.text
    r = httpx.post(
        gw.url + "/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        data={"model": bad},
        files={"file": ("a.wav", b"RIFF", "audio/wav")},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "model", r.text

    for _ in range(3):
        client.chat.completions.create(model="m", messages=MSG)

    def logged() -> list[dict[str, Any]]:
        rows = gw.api("GET", "/api/log/", params={"token_name": "t"})
        return rows if len(rows) >= 3 else []

    rows = _poll(logged)
    assert [r["model"] for r in rows].count("m") >= 3, rows
    assert gw.app.state.services.usage._pending == []


def test_control_characters_in_admin_names_are_refused(pg_url, make_gateway, fake_upstream):
    gw = make_gateway(database_url=pg_url)
    for path, body in [
        ("/api/token/", {"name": "a\x00b", "unlimited_quota": True}),
        ("/api/channel/", {"name": "c\x00", "base_url": fake_upstream.url, "models": "m"}),
    ]:
        r = gw.admin.post(path, json=body)
        assert r.status_code == 400 or not r.json().get("success"), r.text
        assert "control characters" in r.text, r.text
    assert gw.api("GET", "/api/token/") == []


def _row(request_id: str, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "created_at": time.time(),
        "request_id": request_id,
        "token_id": 1,
        "token_name": "t",
        "model": "m",
        "upstream_model": "m",
        "channel_id": 0,
        "channel_name": "",
        "endpoint": "chat",
        "status": 200,
        "prompt_tokens": 1,
        "completion_tokens": 6,
        "quota": 30,
        "latency_ms": 1,
        "ttfb_ms": 1,
        "is_stream": False,
        "retries": 0,
        "error": "",
        "content": "",
    }
    row.update(over)
    return row


def _record(request_id: str, **over: Any) -> UsageRecord:
    # a limited token that reserved 100 at request time and really costs 30
    return UsageRecord(
        log=_row(request_id, **over), token_id=1, unlimited=False, reserved=100, charged=30
    )


def test_usage_writer_drops_only_the_row_postgres_refuses(pg_url):
    upgrade(pg_url)
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(plain) as conn:
            return conn.execute(sql).fetchall()

    async def scenario() -> UsageWriter:
        engine = make_engine(pg_url)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            # four requests have reserved 100 each already
            session.add(Token(id=1, name="t", key_hash="h", remain_quota=600, used_quota=400))
            await session.commit()
        writer = UsageWriter(sessions, interval=0.05)
        writer.start()
        try:
            writer.record(_record("good-1"))
            writer.record(_record("bad", model="m\x00", error="upstream said \x00"))
            writer.record(_record("good-2"))
            await writer.flush()
            # the writer keeps going: a later row is written by its own background flush
            writer.record(_record("good-3"))
            async with asyncio.timeout(10):
                while writer._pending:
                    await asyncio.sleep(0.05)
            await writer.flush()
        finally:
            await writer.close(flush_for_s=1)
            await engine.dispose()
        return writer

    writer = asyncio.run(scenario())
    ids = sorted(r[0] for r in query("SELECT request_id FROM usagelog"))
    assert ids == ["good-1", "good-2", "good-3"]
    assert writer.rejected == 1
    # every settlement landed, the refused row's included: 4 reservations of 100 became 30 each
    assert query("SELECT remain_quota, used_quota FROM token WHERE id = 1") == [(880, 120)]


def test_a_logged_prompt_holding_nul_keeps_its_usage_row(pg_url, make_gateway, fake_upstream):
    gw = make_gateway(database_url=pg_url)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="c", log_content=True)
    gw.openai(key).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a\x00b"}]
    )
    rows = _poll(lambda: gw.api("GET", "/api/log/", params={"token_name": "c"}))
    assert len(rows) == 1, rows
    assert gw.app.state.services.usage.rejected == 0
