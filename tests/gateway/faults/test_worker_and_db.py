"""A real worker SIGKILLed mid-stream, and PostgreSQL cut off behind a proxy."""

from __future__ import annotations

import os
import signal
import time

import openai
import psycopg
import pytest

from tests.gateway.faults.helpers import TcpProxy
from tests.support.worker import WorkerProcess, spec_dict

MSG = [{"role": "user", "content": "tell me something long"}]


def test_worker_sigkill_mid_stream_then_fails_over(make_gateway, fake_upstream):
    gw = make_gateway()
    with WorkerProcess(spec_dict(engine_options={"token_delay_s": 0.2})) as worker:
        gw.add_channel(
            name="worker", base_url=f"{worker.base_url}/v1", models="fake-llm", priority=10
        )
        gw.add_channel(name="backup", base_url=fake_upstream.url, models="fake-llm")
        client = gw.openai(gw.create_token(name="k"))
        got = []
        with pytest.raises(openai.APIError) as exc:
            for chunk in client.chat.completions.create(
                model="fake-llm", messages=MSG, stream=True, max_tokens=200
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
                    if len(got) == 2:
                        assert worker.proc is not None
                        os.kill(worker.proc.pid, signal.SIGKILL)
        assert len(got) >= 2
        assert "incomplete" in str(exc.value)
        worker.proc.wait(10)
        # the dead worker refuses connections: the next request fails over to the backup
        r = client.chat.completions.create(model="fake-llm", messages=MSG)
        assert r.choices[0].message.content.endswith("[up1]")
    gw.flush_usage()
    rows = gw.api("GET", "/api/log/", params={"token_name": "k"})
    by_channel = {r["channel_name"]: r for r in rows}
    assert by_channel["worker"]["error"] and by_channel["worker"]["completion_tokens"] > 0
    assert by_channel["backup"]["status"] == 200 and by_channel["backup"]["retries"] == 1


def _count_rows(url: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute("SELECT count(*) FROM usagelog").fetchone()[0]


def test_database_briefly_unavailable_loses_no_usage(pg_url, make_gateway, fake_upstream):
    db_name = pg_url.rsplit("/", 1)[1]
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        gw = make_gateway(
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{db_name}"
        )
        gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
        unlimited = gw.openai(gw.create_token(name="u"))
        limited = gw.openai(gw.create_token(name="q", unlimited_quota=False, remain_quota=10**9))
        unlimited.chat.completions.create(model="m", messages=MSG)  # caches the token
        limited.chat.completions.create(model="m", messages=MSG)
        gw.flush_usage()
        assert _count_rows(pg_url) == 2

        proxy.cut()
        for _ in range(5):  # known token, no quota to reserve: served while the DB is away
            r = unlimited.chat.completions.create(model="m", messages=MSG)
            assert r.choices[0].message.content.endswith("[up1]")
        # a limited token needs the database to reserve quota: a clean 503, not a 500
        with pytest.raises(openai.APIStatusError) as exc:
            limited.chat.completions.create(model="m", messages=MSG)
        assert exc.value.status_code == 503 and "database" in exc.value.message
        usage = gw.app.state.services.usage
        assert len(usage._pending) == 5  # kept, not lost (the refused request made no row)

        proxy.restore()
        deadline = time.monotonic() + 60
        while usage._pending:
            assert time.monotonic() < deadline, "usage rows were not written after recovery"
            time.sleep(0.2)
        gw.flush_usage()
        assert _count_rows(pg_url) == 2 + 5
        assert usage.dropped == 0
        rows = gw.api("GET", "/api/log/", params={"token_name": "u"})
        assert len(rows) == 6 and all(r["status"] == 200 for r in rows)
    finally:
        proxy.stop()
