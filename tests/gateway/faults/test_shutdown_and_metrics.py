"""Graceful shutdown finishes a stream in flight and writes its usage row; /metrics reports the
relay per app."""

from __future__ import annotations

import sqlite3
import threading

import httpx

MSG = [{"role": "user", "content": "hi"}]


def test_stream_in_flight_completes_across_shutdown_and_is_recorded(make_gateway, fake_upstream):
    fake_upstream.reset(chunk_delay=0.3)  # ~2 s of stream
    gw = make_gateway(usage_flush_interval_s=60)  # only the shutdown flush can write the row
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    key = gw.create_token(name="s")
    lines: list[str] = []
    first = threading.Event()

    def consume() -> None:
        with httpx.stream(
            "POST",
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "m", "messages": MSG, "stream": True},
            timeout=60,
        ) as resp:
            for line in resp.iter_lines():
                if line:
                    lines.append(line)
                    first.set()

    t = threading.Thread(target=consume)
    t.start()
    assert first.wait(30)
    gw.server.server.should_exit = True  # SIGTERM's effect: stop accepting, finish in flight
    t.join(60)
    gw.server.thread.join(60)
    assert not gw.server.thread.is_alive()
    assert lines[-1] == "data: [DONE]" and not any('"error"' in x for x in lines)
    db = sqlite3.connect(gw.app.state.services.settings.home / "modelport.db")
    rows = db.execute(
        "SELECT token_name, status, error, completion_tokens FROM usagelog"
    ).fetchall()
    assert rows == [("s", 200, "", rows[0][3])] and rows[0][3] > 0


def test_metrics_count_requests_tokens_and_ttft(make_gateway, fake_upstream):
    a, b = make_gateway(), make_gateway()  # two apps in one process: separate registries
    a.add_channel(name="chan", base_url=fake_upstream.url, models="m")
    client = a.openai(a.create_token())
    client.chat.completions.create(model="m", messages=MSG)
    list(client.chat.completions.create(model="m", messages=MSG, stream=True))
    text = a.admin.get("/metrics").text
    assert (
        'modelport_requests_total{channel="chan",model="m",status="200",surface="chat"} 2.0' in text
    )
    assert 'modelport_time_to_first_token_seconds_count{channel="chan",model="m"} 1.0' in text
    assert 'modelport_tokens_total{channel="chan",kind="prompt",model="m"}' in text
    assert 'modelport_tokens_total{channel="chan",kind="completion",model="m"}' in text
    assert "modelport_usage_backlog " in text and "modelport_limiter_in_flight " in text
    assert "modelport_requests_total{" not in b.admin.get("/metrics").text


def test_extra_gauges_can_be_registered(gateway):
    gateway.app.state.services.metrics.register_gauge(
        "modelport_worker_state", "per worker", lambda: {("w1", "ready"): 1.0}, ("uid", "state")
    )
    assert (
        'modelport_worker_state{state="ready",uid="w1"} 1.0' in gateway.admin.get("/metrics").text
    )
