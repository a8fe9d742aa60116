"""Local workers under `modelport serve` (issue 14, issue 20): each launch has its own key, so a
local process that finds a worker's port gets 401 instead of free, unmetered, unlogged use; and a
worker's environment holds none of the gateway's secrets (it runs third-party model code)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, REDIS_URL
from tests.scale.procs import SECRET, Replica
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)

MODEL = "smollm2-135m-instruct"
CLUSTER_SECRET = "cluster-secret-for-worker-env-0123456789"
PG_PASSWORD = "pg-password-not-for-workers"  # trust auth ignores it
PROVIDER_KEY = "sk-provider-key-not-for-workers"
MSG = [{"role": "user", "content": "hello there"}]


def test_a_worker_needs_its_key_and_inherits_no_gateway_secret(tmp_path: Path, pg_url: str):
    db_url = pg_url.replace("postgres@", f"postgres:{PG_PASSWORD}@")
    env = {
        "MODELPORT_RUNTIME_ENABLED": "true",
        "MODELPORT_DATABASE_URL": db_url,
        "MODELPORT_REDIS_URL": REDIS_URL,
        "MODELPORT_REDIS_PREFIX": f"mpkeys-{tmp_path.name}",
        "MODELPORT_CLUSTER_SECRET": CLUSTER_SECRET,
        "MODELPORT_NODE_TOKEN": "node-token-not-for-workers",
        "OPENAI_API_KEY": PROVIDER_KEY,
        "HF_HUB_OFFLINE": "1",
    }
    gw = Replica(tmp_path / "gw", env).ready()
    try:
        body = {"model_name": MODEL, "model_uid": "w", "model_engine": "fake"}
        r = gw.admin.post("/v1/models", json=body, timeout=180)
        assert r.status_code == 200, r.text
        (rep,) = gw.api("GET", "/api/runtime/instances/w")["replicas"]
        worker = f"http://127.0.0.1:{rep['port']}"

        call = {"model": "w", "messages": MSG}
        for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"Authorization": "x"}):
            r = httpx.post(f"{worker}/v1/chat/completions", json=call, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "invalid_worker_key"
        assert httpx.get(f"{worker}/health").status_code == 401  # it names the pid and load

        key = gw.api("POST", "/api/token/", json={"name": "u", "unlimited_quota": True})["key"]
        r = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json=call,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert r.status_code == 200, r.text

        environ = Path(f"/proc/{rep['pid']}/environ").read_bytes()
        assert b"MODELPORT_WORKER_SECRET=" in environ  # its own key, and nothing of ours
        for value in (
            ADMIN_TOKEN,
            SECRET,
            PG_PASSWORD,
            CLUSTER_SECRET,
            "node-token-not-for-workers",
            PROVIDER_KEY,
            REDIS_URL,
        ):
            assert value.encode() not in environ, value
    finally:
        gw.stop()
