"""The access log of `modelport serve` as users run it: one JSON line per request, ours.

uvicorn writes its own access line too unless told not to; the gateway's line (gateway/logging.py)
already says everything uvicorn's does (client, method, path, status) plus the request id, token,
model and latency, so the second line was pure cost (about a tenth of a relayed request's CPU,
bench/gateway/README.md round two)."""

from __future__ import annotations

import gc

import httpx
import orjson

from gateway.logging import ACCESS_LOGGER
from tests.scale.procs import MODELPORT, Proc, wait_for
from tests.support.servers import free_port


def test_serve_writes_one_access_line_per_request_with_the_client(tmp_path):
    port = free_port()
    env = {
        "MODELPORT_HOME": str(tmp_path / "home"),
        "MODELPORT_ADMIN_TOKEN": "access-log-test-admin-token",
        "MODELPORT_RUNTIME_ENABLED": "false",
    }
    log = tmp_path / "serve.log"
    proc = Proc([MODELPORT, "serve", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, "serve", 60)
        r = httpx.get(
            f"{url}/v1/models",
            headers={"Authorization": "Bearer sk-nobody", "X-Request-ID": "access-log-probe"},
        )
        assert r.status_code == 401
        ours = wait_for(lambda: _lines(log, "access-log-probe"), "the access line", 30)
    finally:
        proc.stop()
    assert len(ours) == 1, ours
    line = ours[0]
    assert line["logger"] == ACCESS_LOGGER
    assert (line["client"], line["method"], line["path"], line["status"]) == (
        "127.0.0.1",
        "GET",
        "/v1/models",
        401,
    )
    text = log.read_text()
    assert '"GET /v1/models HTTP/1.1" 401' not in text  # uvicorn's own line is off


def _lines(log, request_id):
    found = []
    for raw in log.read_text().splitlines():
        if request_id in raw and raw.startswith("{"):
            found.append(orjson.loads(raw))
    return found


def test_requests_without_an_id_get_distinct_ids(gateway):
    ids = {httpx.get(f"{gateway.url}/health").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_objects_built_at_startup_are_out_of_the_collectors_sight(make_gateway):
    """gc.freeze() once the app has started: the ~200k objects of imports and services live as
    long as the process, and walking them on every full collection cost ~40 % of a request."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    make_gateway()
    assert gc.get_freeze_count() > 10_000
