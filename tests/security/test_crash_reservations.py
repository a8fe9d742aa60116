"""Attack (or accident): the gateway process is killed with SIGKILL while streams are in flight.

Before: the reservations of the killed process lived only in its memory: 20 streams killed
mid-way left no usage rows and their reserved units (2,000 here) neither refunded nor settled,
for good. Now each reservation is a QuotaReservation row: the next start of the same installation
(or a surviving replica, once it sees the holder is gone) refunds it and writes a usage row that
says so. Real `modelport serve` processes, a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.scale.procs import Replica, wait_for
from tests.security.test_quota_overspend import inflating  # noqa: F401  (the barrier upstream)

# output 10 USD / 1M tokens: max_tokens=20 reserves 100 units per stream
PRICES = {"m": {"input": 0.0, "output": 10.0}}
QUOTA, STREAMS, RESERVED = 10_000, 20, 100


def _open_streams(url: str, key: str, n: int) -> tuple[httpx.Client, list[Any]]:
    """n streams, each read up to its first content chunk (so each is mid-stream)."""
    client = httpx.Client(base_url=url, timeout=60)
    opened: list[tuple[httpx.Response, Any]] = []
    for _ in range(n):
        request = client.build_request(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "m",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 20,
                "stream": True,
            },
        )
        resp = client.send(request, stream=True)
        assert resp.status_code == 200, resp.read()
        # The line iterator is kept: an abandoned one closes its connection when collected.
        lines = resp.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert "content" in first
        opened.append((resp, lines))
    return client, opened


def _crash_midstream(a: Replica, fake: Any) -> str:
    fake.reset(chunk_delay=60)  # one word, then a long pause: every stream stays open
    a.api("POST", "/api/channel/", json={"name": "up", "base_url": fake.url, "models": "m"})
    key = a.api(
        "POST",
        "/api/token/",
        json={"name": "crash", "unlimited_quota": False, "remain_quota": QUOTA},
    )["key"]
    client, streams = _open_streams(a.url, key, STREAMS)
    a.kill()
    for resp, _ in streams:
        resp.close()
    client.close()
    return str(key)


def _token(r: Replica) -> dict[str, Any]:
    return r.api("GET", "/api/token/", params={"keyword": "crash"})[0]  # type: ignore[no-any-return]


def _refunded(r: Replica) -> Callable[[], bool]:
    def check() -> bool:
        t = _token(r)
        return bool(t["remain_quota"] == QUOTA and t["used_quota"] == 0)

    return check


def _recovered_rows(r: Replica) -> list[dict[str, Any]]:
    logs = r.api("GET", "/api/log/", params={"token_name": "crash", "page_size": 100})
    return [x for x in logs if "stopped before this request was settled" in x["error"]]


def test_sigkill_mid_stream_is_refunded_at_the_next_start(tmp_path, fake_upstream):
    home: Path = tmp_path / "home"
    env = {"MODELPORT_PRICES": json.dumps(PRICES)}
    first = Replica(home, env).ready()
    try:
        _crash_midstream(first, fake_upstream)
    finally:
        first.stop()
    # The money in flight is on disk, not lost with the process.
    with sqlite3.connect(home / "modelport.db") as db:
        (open_rows,) = db.execute("SELECT count(*) FROM quotareservation").fetchone()
        (remain,) = db.execute("SELECT remain_quota FROM token WHERE name='crash'").fetchone()
    assert open_rows == STREAMS
    assert remain == QUOTA - STREAMS * RESERVED

    second = Replica(home, env).ready()
    try:
        wait_for(_refunded(second), "the crashed process's reservations refunded")
        rows = _recovered_rows(second)
        assert len(rows) == STREAMS
        assert {x["status"] for x in rows} == {500}
    finally:
        second.stop()
    with sqlite3.connect(home / "modelport.db") as db:
        assert db.execute("SELECT count(*) FROM quotareservation").fetchone() == (0,)


def test_a_surviving_replica_refunds_a_killed_ones_reservations(tmp_path, fake_upstream, pg_url):
    """Two replicas on PostgreSQL: one is killed mid-stream, the other (never restarted) refunds
    what it held, exactly once."""
    env = {"MODELPORT_PRICES": json.dumps(PRICES), "MODELPORT_DATABASE_URL": pg_url}
    doomed = Replica(tmp_path / "a", env).ready()
    survivor = Replica(tmp_path / "b", env).ready()
    try:
        _crash_midstream(doomed, fake_upstream)
        wait_for(_refunded(survivor), "the survivor refunds the killed replica's reservations")
        assert len(_recovered_rows(survivor)) == STREAMS
    finally:
        doomed.stop()
        survivor.stop()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as db:
        assert db.execute("SELECT count(*) FROM quotareservation").fetchone() == (0,)


def test_recovery_spares_a_live_holder_and_refunds_an_expired_one(make_gateway, tmp_path):
    """Holders on other hosts (no pid to check): a live lease protects a holder's reservations
    however old they are; an expired lease gives them up."""
    home = tmp_path / "home"
    gw = make_gateway(home=home)
    gw.create_token(name="crash", unlimited_quota=False, remain_quota=QUOTA)
    now = time.time()
    with sqlite3.connect(home / "modelport.db") as db:
        (tid,) = db.execute("SELECT id FROM token WHERE name='crash'").fetchone()
        db.execute(
            "UPDATE token SET remain_quota = remain_quota - 300, used_quota = 300 WHERE id=?",
            (tid,),
        )
        for holder, expires in (("hostA/1/10/aa", now + 600), ("hostB/1/10/bb", now - 1)):
            db.execute("INSERT INTO gatewaylease VALUES (?, ?)", (holder, expires))
        rows = [("hostA/1/10/aa", 100), ("hostB/1/10/bb", 200)]
        for holder, amount in rows:
            db.execute(
                "INSERT INTO quotareservation (token_id, amount, holder, request_id, model, "
                "created_at) VALUES (?, ?, ?, 'r', 'm', ?)",
                (tid, amount, holder, now - 3600),
            )
    ledger = gw.app.state.services.usage.ledger
    refunded = asyncio.run_coroutine_threadsafe(ledger.recover(), gw.server.server_loop).result(30)
    assert refunded == 1
    token = gw.api("GET", "/api/token/", params={"keyword": "crash"})[0]
    assert (token["remain_quota"], token["used_quota"]) == (QUOTA - 100, 100)
    with sqlite3.connect(home / "modelport.db") as db:
        left = db.execute("SELECT holder, amount FROM quotareservation").fetchall()
        leases = {h for (h,) in db.execute("SELECT holder FROM gatewaylease")}
    assert left == [("hostA/1/10/aa", 100)]
    assert "hostB/1/10/bb" not in leases and "hostA/1/10/aa" in leases


def test_a_reservation_refunded_while_its_holder_lived_is_not_refunded_twice(
    make_gateway,
    inflating,  # noqa: F811
    tmp_path,
):
    """Should a recovery refund a reservation whose holder was only stalled (its lease ran out),
    the holder's settlement finds the row gone and takes the refunded amount back."""
    home = tmp_path / "home"
    gw = make_gateway(home=home, prices=PRICES)
    gw.add_channel(name="up", base_url=inflating.url, models="m")
    key = gw.create_token(name="crash", unlimited_quota=False, remain_quota=1000)
    client = gw.openai(key)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client.chat.completions.create, **body)
        wait_for(lambda: inflating.arrived == 1, "the request to reach the upstream")
        with sqlite3.connect(home / "modelport.db") as db:  # what a recovery does
            (rid, amount, tid) = db.execute(
                "SELECT id, amount, token_id FROM quotareservation"
            ).fetchone()
            db.execute("DELETE FROM quotareservation WHERE id=?", (rid,))
            db.execute(
                "UPDATE token SET remain_quota = remain_quota + ?, used_quota = used_quota - ? "
                "WHERE id=?",
                (amount, amount, tid),
            )
        inflating.release()
        answer.result(60)
    gw.flush_usage()
    token = gw.api("GET", "/api/token/", params={"keyword": "crash"})[0]
    assert (token["remain_quota"], token["used_quota"]) == (990, 10)
