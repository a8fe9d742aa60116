"""A hung worker (SIGSTOP) used to keep receiving traffic for ~24 s, until the supervisor's health
checks gave up on it (issue 20). Now a launched model has a first-byte timeout of its own
(`first_byte_timeout_s` per launch, `local_first_byte_timeout_s` by default): the request that
meets the hung worker fails over to the other replica, and the worker's circuit opens at once,
so the requests after it never wait for it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import Gateway
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)

MODEL = "smollm2-135m-instruct"
MSG = [{"role": "user", "content": "hello there"}]


def test_a_stopped_worker_fails_over_and_is_skipped_at_once(make_gateway):
    gw: Gateway = make_gateway(runtime_enabled=True)
    body = {
        "model_name": MODEL,
        "model_uid": "w",
        "model_engine": "fake",
        "replica": 2,
        "first_byte_timeout_s": 2,
    }
    r = gw.admin.post("/v1/models", json=body, timeout=180)
    assert r.status_code == 200, r.text
    replicas = gw.api("GET", "/api/runtime/instances/w")["replicas"]
    assert [rep["first_byte_timeout_s"] for rep in replicas] == [2, 2]
    hung = replicas[0]
    os.kill(hung["pid"], signal.SIGSTOP)
    try:
        client = gw.openai(gw.create_token(name="u"), timeout=60)
        took = []
        for _ in range(10):  # round robin would send every other one to the hung worker
            t0 = time.monotonic()
            assert client.chat.completions.create(model="w", messages=MSG).choices
            took.append(time.monotonic() - t0)
        print(f"slowest request {max(took):.2f}s (timeout 2s), the others at most "
              f"{sorted(took)[-2]:.2f}s")  # fmt: skip
        circuits = {c["endpoint"]: c["state"] for c in gw.api("GET", "/api/health/circuits")}
        hung_id = next(e for e in circuits if e.endswith(f":{hung['port']}/v1"))
        assert circuits[hung_id] == "open"
        gw.flush_usage()
        logs = gw.api("GET", "/api/log/", params={"token_name": "u", "page_size": 100})
        assert len(logs) == 10 and all(row["status"] == 200 for row in logs)
    finally:
        os.kill(hung["pid"], signal.SIGCONT)
