"""`MODELPORT_KEEP_ALIVE_S` (README, Local models; config/modelport.yaml `keep_alive_s`): the
environment variable alone makes an idle model unload, and the next request loads it again; a
launch's own `keep_alive_s` still wins over it. The fake engine serves an image model folder here,
so no weights are needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.local_runtime.test_supervisor import fast, instance
from tests.support.polling import wait_for


def _launch(gw: Gateway, folder: Path, uid: str, **body) -> None:
    spec = {
        "model_name": "sd-turbo",
        "model_uid": uid,
        "model_type": "image",
        "model_engine": "fake",
        "model_path": str(folder),
        **body,
    }
    resp = gw.admin.post("/v1/models", json=spec, timeout=120)
    assert resp.status_code == 200, resp.text


def test_keep_alive_env_unloads_an_idle_model(
    make_gateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELPORT_KEEP_ALIVE_S", "1")
    gw: Gateway = make_gateway(runtime_enabled=True)
    assert gw.app.state.services.settings.keep_alive_s == 1
    fast(gw)
    folder = tmp_path / "pipeline"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "Fake"}))
    _launch(gw, folder, "idle")
    _launch(gw, folder, "pinned", keep_alive_s=0)  # the launch's own setting wins
    client = gw.openai(gw.create_token())
    client.images.generate(model="idle", prompt="a cube")
    wait_for(lambda: instance(gw, "idle")["status"] == "unloaded", "the idle unload")
    log = (gw.app.state.services.settings.home / "logs" / "idle-0.log").read_text()
    assert "unloading: idle for 1s" in log
    assert instance(gw, "pinned")["status"] == "ready"  # idle as long, never unloaded
    assert client.images.generate(model="idle", prompt="again").data  # reloads on demand
    assert instance(gw, "idle")["status"] == "ready"
