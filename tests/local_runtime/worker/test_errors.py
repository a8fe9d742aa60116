"""The worker answers every error with OpenAI's ErrorResponse and nothing else.

`{"error": {"message", "type", "param", "code"}}` (openai/openai-openapi openapi.yaml,
components.schemas.Error `required: [type, message, param, code]`), typed by status from the one
table in modelport_wire.openai; the gateway relays these bodies unchanged.
"""

from __future__ import annotations

import httpx
import pytest

from local_runtime.worker.auth import WORKER_SECRET_ENV
from tests.support.polling import wait_for
from tests.support.worker import WorkerProcess, spec_dict

KEY = "worker-key-0123456789"
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def worker():
    with WorkerProcess(spec_dict(uid="fake-err"), env={WORKER_SECRET_ENV: KEY}, wait=None) as w:

        def ready() -> bool:
            r = httpx.get(f"{w.base_url}/health", headers=auth(), timeout=5)
            return r.status_code == 200 and r.json().get("status") == "ready"

        wait_for(ready, "the worker to be ready", limit_s=240, ignore=(httpx.TransportError,))
        yield w


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def openai_error(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    return body["error"]


def test_missing_key_bad_json_and_unknown_route(worker):
    chat = f"{worker.base_url}/v1/chat/completions"
    r = httpx.post(chat, json={"messages": [{"role": "user", "content": "hi"}]})
    e = openai_error(r)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert (e["type"], e["code"], e["param"]) == (
        "authentication_error",
        "invalid_worker_key",
        None,
    )

    r = httpx.post(chat, content=b"{not json", headers=auth())
    e = openai_error(r)
    assert r.status_code == 400
    assert (e["type"], e["code"]) == ("invalid_request_error", "invalid_json")

    r = httpx.get(f"{worker.base_url}/v1/nothing-here", headers=auth())
    e = openai_error(r)
    assert r.status_code == 404 and e["type"] == "invalid_request_error"

    r = httpx.post(f"{worker.base_url}/v1/embeddings", json={"input": "x"}, headers=auth())
    e = openai_error(r)
    assert r.status_code == 400 and e["code"] == "unsupported_operation"
