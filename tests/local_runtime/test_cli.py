"""`modelport launch|list|terminate|engines|catalog|register` in a subprocess against a running
gateway, configured the way users do it: MODELPORT_URL and MODELPORT_ADMIN_TOKEN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from local_runtime.engines import registry
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.support.starter_models import MINILM_MISSING, SMOLLM2_MISSING, minilm_dir, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)


@pytest.fixture
def modelport(
    make_gateway: Callable[..., Gateway],
) -> Callable[..., subprocess.CompletedProcess[str]]:
    gw = make_gateway(runtime_enabled=True)
    env = {**os.environ, "MODELPORT_URL": gw.url, "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", "from gateway.cli import main; main()", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    return run


def test_launch_list_terminate(modelport: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = modelport(
        "launch", "-n", "smollm2-135m-instruct", "-u", "cli-smol", "-e", "fake",
        "-f", "ggufv2", "-s", "0_135", "-q", "Q4_1", "--replica", "2", "--keep-alive", "0",
        "--option", "load_delay_s=2", "--option", "note=hello",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cli-smol"
    assert "cli-smol: loading" in out.stderr  # progress while the launch waits

    listed = modelport("list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == [
        "uid",
        "model_name",
        "model_type",
        "model_engine",
        "status",
        "replica",
    ]
    assert row.split() == ["cli-smol", "smollm2-135m-instruct", "llm", "fake", "ready", "2"]
    as_json = json.loads(modelport("list", "--json").stdout)
    assert as_json[0]["spec"]["engine_options"] == {"load_delay_s": 2, "note": "hello"}

    again = modelport("launch", "-n", "smollm2-135m-instruct", "-u", "cli-smol", "-e", "fake")
    assert again.returncode == 1 and "already launched" in again.stderr

    assert modelport("terminate", "cli-smol").returncode == 0
    assert "no model is launched" in modelport("list").stdout
    gone = modelport("terminate", "cli-smol")
    assert gone.returncode == 1
    assert "no model is launched under uid 'cli-smol'" in gone.stderr


def test_bad_launch_says_why(modelport: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = modelport("launch", "-n", "smollm2-135m-instruc")
    assert out.returncode == 1
    assert "unknown model 'smollm2-135m-instruc'; did you mean smollm2-135m-instruct" in out.stderr
    out = modelport("launch", "-n", "smollm2-135m-instruct", "--option", "oops")
    assert out.returncode != 0 and "key=value" in out.stderr


def test_engines_and_catalog(modelport: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    engines = modelport("engines")
    assert engines.returncode == 0, engines.stderr
    fake = next(line for line in engines.stdout.splitlines() if line.startswith("fake "))
    assert fake.split()[-1] == "yes"
    found = modelport("catalog", "--type", "embedding", "--search", "minilm")
    assert found.returncode == 0, found.stderr
    heading, header, row = found.stdout.splitlines()
    assert (heading, header.split()[0], row.split()[0]) == (
        "embedding: 1 family",
        "name",
        "all-MiniLM-L6-v2",
    )
    every = modelport("list", "--all")
    assert "smollm2-135m-instruct" in every.stdout and "bge-reranker-base" in every.stdout


def test_engines_lists_no_test_double(
    modelport: Callable[..., subprocess.CompletedProcess[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server without the tests' plugin setting (a user's) does not offer the fake engine."""
    monkeypatch.delenv(registry.PLUGINS_ENV)  # the in-process server reads it at each listing
    engines = modelport("engines")
    assert engines.returncode == 0, engines.stderr
    names = [line.split()[0] for line in engines.stdout.splitlines()[1:]]
    assert "llama.cpp" in names and "fake" not in names


@pytest.mark.skipif(minilm_dir() is None, reason=MINILM_MISSING)
def test_register_custom_model(modelport: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = modelport("register", "-n", "mine", "-t", "embedding", "--model-path", str(minilm_dir()))
    assert out.returncode == 0, out.stderr
    found = json.loads(modelport("catalog", "--search", "mine", "--json").stdout)
    rows = [row for row in found if row["name"] == "mine"]  # "MinerU" matches too
    assert rows and rows[0]["custom"] is True
    assert rows[0]["dimensions"] == 384  # read from the files
    assert modelport("unregister", "mine", "-t", "embedding").returncode == 0
    after = json.loads(modelport("catalog", "--search", "mine", "--json").stdout)
    assert "mine" not in {row["name"] for row in after}
