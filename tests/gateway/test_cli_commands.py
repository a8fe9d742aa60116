"""The admin commands of the README's CLI section, each run as a real `modelport` process against
a running gateway: `token create|list|disable`, `channel add|list|test`, and `export fastgpt`
(both formats and `--push` to a fake FastGPT). The quick start's `modelport token create --name
me` must print a key that then works with the official openai client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.fake_fastgpt import FakeFastGPT

MODELPORT = str(Path(sys.executable).parent / "modelport")
MSG = [{"role": "user", "content": "hi"}]

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def served(make_gateway, fake_upstream) -> tuple[Gateway, Run]:
    gw: Gateway = make_gateway()
    env = {**os.environ, "MODELPORT_URL": gw.url, "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN}

    def modelport(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MODELPORT, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    return gw, modelport


def test_cli_channel_add_list_and_test(served, fake_upstream) -> None:
    _, modelport = served
    added = json.loads(
        modelport(
            "channel", "add", "--name", "up", "--base-url", fake_upstream.url,
            "--key", "sk-upstream", "--models", "m,n",
        ).stdout
    )  # fmt: skip
    listed = json.loads(modelport("channel", "list").stdout)
    (row,) = [c for c in listed if c["name"] == "up"]
    assert row["models"] == "m,n" and "sk-upstream" not in json.dumps(listed)
    channel_id = added["id"] if isinstance(added, dict) else row["id"]
    assert channel_id == row["id"]
    tested = modelport("channel", "test", str(channel_id), "--model", "n")
    assert fake_upstream.requests[-1].body["model"] == "n"
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer sk-upstream"
    assert "time" in tested.stdout or "success" in tested.stdout


def test_quick_start_token_create_prints_a_key_that_works(served, fake_upstream) -> None:
    gw, modelport = served
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    created = modelport("token", "create", "--name", "me")
    key = created.stdout.strip()
    assert key.startswith("sk-") and "shown once" in created.stderr
    client = gw.openai(key)
    assert client.chat.completions.create(model="m", messages=MSG).choices[0].message.content
    (row,) = [t for t in json.loads(modelport("token", "list").stdout) if t["name"] == "me"]
    assert key not in json.dumps(row)  # listed by prefix only
    modelport("token", "disable", str(row["id"]))
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="m", messages=MSG)
    assert refused.value.status_code in (401, 403)


def test_cli_export_fastgpt_writes_both_formats_and_pushes(
    served, fake_upstream, tmp_path: Path
) -> None:
    gw, modelport = served
    gw.add_channel(name="up", base_url=fake_upstream.url, models="qwen-chat")
    key = gw.create_token(name="fastgpt")
    config_path = tmp_path / "config.json"
    modelport("export", "fastgpt", "--format", "config", "-o", str(config_path), "--api-key", key)
    config = json.loads(config_path.read_text())
    assert [m["model"] for m in config["llmModels"]] == ["qwen-chat"]
    models = json.loads(
        modelport("export", "fastgpt", "--format", "models", "--api-key", key).stdout
    )
    assert [m["model"] for m in models] == ["qwen-chat"]
    fastgpt = FakeFastGPT(root_password="root-pw")
    try:
        pushed = modelport(
            "export", "fastgpt", "--push", fastgpt.url, "--root-password", "root-pw",
            "--api-key", key,
        )  # fmt: skip
        assert pushed.stdout.strip() == "qwen-chat: ok"
        assert "qwen-chat" in fastgpt.state.db
    finally:
        fastgpt.stop()
