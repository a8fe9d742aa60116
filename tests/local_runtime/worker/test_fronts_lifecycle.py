"""Process hygiene of a worker with HTTP front processes: a killed front is restarted, SIGTERM
and SIGKILL of the worker leave no process behind, the supervisor sees such a worker like any
other, and a worker that cannot have fronts says why."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.local_runtime.worker.minilm import SENTENCES, minilm_spec
from tests.support import polling
from tests.support.worker import WorkerProcess, spec_dict

pytestmark = pytest.mark.slow


def wait_for(check: Callable[[], Any], what: str) -> Any:
    """tests.support.polling.wait_for with room for a model load on a loaded machine."""
    return polling.wait_for(check, what, limit_s=120.0)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited too
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def front_pids(worker: WorkerProcess) -> list[int]:
    health = worker.health()
    assert health is not None
    return [front["pid"] for front in health["fronts"]]


def embed_on_fresh_connections(base_url: str, n: int = 8) -> set[str]:
    """n requests, each on its own connection; the fronts that answered."""
    fronts = set()
    for sentence in SENTENCES[:n]:
        r = httpx.post(f"{base_url}/v1/embeddings", json={"input": sentence}, timeout=60)
        assert r.status_code == 200, r.text
        fronts.add(r.headers["x-modelport-front"])
    return fronts


def test_a_killed_front_is_restarted_and_sigterm_leaves_nothing_behind():
    with WorkerProcess(minilm_spec(http_fronts=2)) as worker:
        first = front_pids(worker)
        os.kill(first[0], signal.SIGKILL)
        restarted = wait_for(
            lambda: (
                (f := worker.health()["fronts"]) and f[0]["restarts"] == 1 and f[0]["pid"] and f
            ),
            "front 0 to be restarted",
        )
        assert restarted[0]["pid"] != first[0]
        assert restarted[1]["restarts"] == 0 and restarted[1]["pid"] == first[1]
        assert embed_on_fresh_connections(worker.base_url, 16) == {"0", "1"}
        assert "HTTP front 0 exited" in worker.stderr()

        now = front_pids(worker)
        assert worker.stop() == 0  # SIGTERM to the worker process only
    for pid in [worker.proc.pid, *first, *now]:
        assert not alive(pid), pid


def test_sigterm_lets_a_request_in_flight_finish():
    texts = [f"{sentence} Number {i}." for i, sentence in enumerate(SENTENCES * 4)]  # 8 batches
    with WorkerProcess(minilm_spec(http_fronts=1)) as worker:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(
                httpx.post, f"{worker.base_url}/v1/embeddings", json={"input": texts}, timeout=120
            )
            wait_for(lambda: worker.health()["inflight"] == 1, "the request to be in flight")
            worker.proc.send_signal(signal.SIGTERM)
            response = answer.result()
        assert worker.proc.wait(60) == 0
    assert response.status_code == 200
    assert len(response.json()["data"]) == len(texts)


def test_sigkill_of_the_worker_takes_its_fronts_with_it():
    with WorkerProcess(minilm_spec(http_fronts=2)) as worker:
        pids = front_pids(worker)
        worker.proc.kill()
        worker.proc.wait()
        wait_for(lambda: not any(alive(pid) for pid in pids), "the fronts to exit")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{worker.base_url}/health", timeout=5)


def test_an_engine_without_front_support_fails_to_load_with_the_reason():
    spec = spec_dict(engine_options={"http_fronts": 1})  # the fake LLM engine
    with WorkerProcess(spec, wait="error") as worker:
        health = worker.health()
        assert health is not None and health["status"] == "error"
        assert "http_fronts" in health["error"] and "fake" in health["error"]
        assert len(health["fronts"]) == 1  # /health still comes through the front


def test_a_taken_port_exits_with_the_reason():
    worker = WorkerProcess(minilm_spec(http_fronts=2), wait=None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", worker.port))
        taken.listen()
        worker.start()
        assert worker.proc is not None and worker.proc.wait(60) == 1
    worker.stop()
    assert "cannot listen on 127.0.0.1" in worker.stderr()


@pytest.mark.parametrize("value", [-1, "many", 1.5])
def test_a_bad_http_fronts_value_exits_with_the_reason(value):
    worker = WorkerProcess(spec_dict(engine_options={"http_fronts": value}), wait=None).start()
    assert worker.proc is not None and worker.proc.wait(60) == 2
    worker.stop()
    assert "engine_options.http_fronts must be" in worker.stderr()


def test_the_supervisor_launches_serves_and_stops_a_worker_with_fronts(make_gateway):
    gw = make_gateway(runtime_enabled=True)
    body = {
        "model_uid": "mini",
        "model_name": "all-MiniLM-L6-v2",
        "model_type": "embedding",
        "model_engine": "sentence_transformers",
        "http_fronts": 2,  # Xinference-style top-level engine option
        "torch_threads": 1,
    }
    resp = gw.admin.post("/v1/models", json=body, timeout=600)
    assert resp.status_code == 200, resp.text
    replica = gw.api("GET", "/api/runtime/instances/mini")["replicas"][0]
    assert replica["status"] == "ready"
    (rep,) = gw.app.state.services.runtime.supervisor._instances["mini"].replicas
    own = {"Authorization": f"Bearer {rep.key}"}  # every worker launch has its own key
    worker_health = httpx.get(f"http://127.0.0.1:{replica['port']}/health", headers=own).json()
    assert worker_health["pid"] == replica["pid"]
    pids = [front["pid"] for front in worker_health["fronts"]]

    client = gw.openai(gw.create_token(name="fronts"), timeout=120)
    vectors = client.embeddings.create(model="mini", input=SENTENCES[:3]).data
    assert [len(v.embedding) for v in vectors] == [384] * 3
    served = httpx.get(f"http://127.0.0.1:{replica['port']}/health", headers=own).json()["fronts"]
    assert sum(front["requests"] for front in served) == 1

    assert gw.admin.delete("/v1/models/mini", timeout=120).status_code == 200
    wait_for(lambda: not any(alive(pid) for pid in [replica["pid"], *pids]), "the worker to stop")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="mini", input="x")
