"""`modelport serve --workers 2` on one machine, SQLite and no Redis: it starts every time, and what
one worker writes (channels, tokens, launched models) every worker serves.

Each HTTP connection below is pinned to a known worker process: uvicorn's workers share one
listening socket, so the test opens connections until the kernel has handed one to each worker,
and finds which worker holds a connection from the server side of the socket (psutil).
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.scale.procs import MODELPORT, SECRET, Proc, wait_for
from tests.support.servers import free_port
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf


class Serve(Proc):
    def __init__(self, home: Path, *, runtime: bool = False, workers: int = 2) -> None:
        self.port = free_port()
        env = {
            "MODELPORT_HOME": str(home),
            "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
            "MODELPORT_SECRET_KEY": SECRET,
            "MODELPORT_RUNTIME_ENABLED": "true" if runtime else "false",
            "MODELPORT_LOG_FORMAT": "text",
            "MODELPORT_DATABASE_URL": "",
            "MODELPORT_REDIS_URL": "",
            "HF_HUB_OFFLINE": "1",
        }
        home.mkdir(parents=True, exist_ok=True)
        args = [MODELPORT, "serve", "--port", str(self.port), "--workers", str(workers)]
        super().__init__(args, env, home / "serve.log")
        self.workers = workers

    def started(self) -> None:
        """Every worker said "Application startup complete" (or the test fails with the log)."""

        def up() -> bool:
            text = self.log.read_text(errors="replace")
            if not self.alive() or "Traceback" in text:
                raise AssertionError(f"serve failed:\n{self.tail()}")
            return text.count("Application startup complete") >= self.workers

        wait_for(up, f"{self.workers} workers started", 120)

    def worker_pids(self) -> set[int]:
        procs = psutil.Process(self.proc.pid).children()
        return {p.pid for p in procs if "spawn_main" in " ".join(p.cmdline())}

    def connect(self) -> Conn:
        return Conn(self)

    def conns_to_every_worker(self) -> dict[int, Conn]:
        """One open keep-alive connection per worker process."""
        pids = self.worker_pids()
        assert len(pids) == self.workers, pids
        found: dict[int, Conn] = {}
        for _ in range(400):
            conn = self.connect()
            if conn.pid in found or conn.pid is None:
                conn.close()
            else:
                found[conn.pid] = conn
            if set(found) == pids:
                return found
            time.sleep(0.01)
        raise AssertionError(f"no connection reached workers {pids - set(found)}")


class Conn:
    """A keep-alive HTTP connection and the worker process that accepted it."""

    def __init__(self, serve: Serve) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=60)
        self.http.connect()
        self.http.request("GET", "/health")  # the worker has accepted once it answers
        self.http.getresponse().read()
        assert self.http.sock is not None
        local = self.http.sock.getsockname()[1]
        self.pid: int | None = None
        for pid in serve.worker_pids():
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.raddr and c.raddr.port == local and c.laddr.port == serve.port:
                    self.pid = pid

    def call(self, method: str, path: str, body: Any = None, key: str = ADMIN_TOKEN) -> Any:
        headers = {"Authorization": key, "Content-Type": "application/json"}
        self.http.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        resp = self.http.getresponse()
        return resp.status, json.loads(resp.read() or b"null")

    def close(self) -> None:
        self.http.close()


def chat(conn: Conn, key: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    status, _ = conn.call("POST", "/v1/chat/completions", body, key="Bearer " + key)
    return int(status)


def test_two_workers_start_on_a_fresh_sqlite_home_every_time(tmp_path):
    """Five fresh homes in a row: migrations run once, before the workers fork (they used to
    collide: `table adminuser already exists`), and SIGTERM leaves no process behind."""
    for i in range(5):
        serve = Serve(tmp_path / f"home{i}", runtime=True)
        try:
            serve.started()
            pids = serve.worker_pids()
            assert len(pids) == 2
            conn = serve.connect()
            assert conn.call("GET", "/api/status")[0] == 200
            conn.close()
        finally:
            serve.stop()
        assert serve.proc.returncode == 0, serve.tail()
        assert not [p for p in pids if psutil.pid_exists(p)], "a worker outlived serve"
        assert "already exists" not in serve.log.read_text(errors="replace")


def test_what_one_worker_writes_every_worker_serves(tmp_path, fake_upstream):
    """Channels, token disables and deletes written through one worker reach the other through
    the database's change log (no Redis). A channel is served by every worker as soon as its
    write answered: a worker that does not route a model reads the log before refusing it."""
    serve = Serve(tmp_path / "home")
    try:
        serve.started()
        a, b = (conn for _pid, conn in sorted(serve.conns_to_every_worker().items()))
        status, body = a.call("POST", "/api/token/", {"name": "t", "unlimited_quota": True})
        key = body["data"]["key"]
        for conn in (a, b):  # unknown model everywhere; both workers cache the token now
            assert chat(conn, key, "fresh-model") == 404

        status, body = a.call(
            "POST",
            "/api/channel/",
            {"name": "up", "type": 50, "base_url": fake_upstream.url, "models": "fresh-model"},
        )
        assert status == 200 and body["success"], body
        assert [chat(b, key, "fresh-model"), chat(a, key, "fresh-model")] == [200, 200]

        status, rows = a.call("GET", "/api/token/")
        token_id = next(r["id"] for r in rows["data"] if r["name"] == "t")
        status, _ = a.call("PUT", "/api/token/?status_only=1", {"id": token_id, "status": 2})
        assert status == 200
        wait_for(lambda: chat(b, key, "fresh-model") == 401, "the disable on the other worker", 10)
    finally:
        serve.stop()


@pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)
def test_a_model_launched_through_either_worker_is_served_by_both(tmp_path):
    """One worker owns the runtime (host lock); the other proxies launches and routes to the
    owner's workers through node records in the database (no Redis). A launch that answered is
    served by every worker at once: the owner answers after its heartbeat is written, and the
    other re-reads the record before refusing a UID it still believes is loading."""
    serve = Serve(tmp_path / "home", runtime=True)
    try:
        serve.started()
        conns = serve.conns_to_every_worker()
        status, body = next(iter(conns.values())).call(
            "POST", "/api/token/", {"name": "t", "unlimited_quota": True}
        )
        key = body["data"]["key"]
        for i, conn in enumerate(conns.values()):
            uid = f"w{i}"
            launch = {
                "model_name": "smollm2-135m-instruct",
                "model_uid": uid,
                "model_engine": "fake",
            }
            status, body = conn.call("POST", "/v1/models", launch)
            assert status == 200, body
            assert [chat(other, key, uid) for other in conns.values()] == [200, 200]
    finally:
        serve.stop()
    assert serve.proc.returncode == 0, serve.tail()


def test_replicas_on_postgresql_without_redis_agree(pg_url, make_gateway, fake_upstream):
    """The change log works on PostgreSQL too (sequence ids can commit out of order there, so
    the poll re-reads a window): a channel added and then disabled on one replica is served and
    then refused by the other, with no Redis configured."""
    a = make_gateway(database_url=pg_url, redis_url="")
    b = make_gateway(database_url=pg_url, redis_url="")
    key = a.create_token(name="t")
    ch = a.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = b.openai(key, max_retries=0)

    def served() -> bool:
        try:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        except openai.NotFoundError:
            return False
        return True

    wait_for(served, "the new channel on the other replica", 10)
    a.api("PUT", "/api/channel/", json={"id": ch["id"], "status": 2})
    wait_for(lambda: not served(), "the disabled channel gone on the other replica", 10)
