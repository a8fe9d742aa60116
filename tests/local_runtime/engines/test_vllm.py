"""VllmEngine: a real vLLM (CPU build) server process on the tiny llama, in-process and behind a
real worker process. Slow: each vLLM start takes 30-70 s on 2 cores, and there are three.

vLLM lives in its own venv (scripts/setup-vllm-venv.sh); point MODELPORT_VLLM_PYTHON at its
interpreter, or leave .venv-vllm in the repository root.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import orjson
import pytest

from local_runtime.engines.base import EngineError
from local_runtime.engines.vllm import VllmEngine
from local_runtime.spec import ResolvedSpec
from tests.support.scripted_llama import TOOL_SCRIPT, build_scripted_llama
from tests.support.worker import ROOT, WorkerProcess

VLLM_PYTHON = os.environ.get("MODELPORT_VLLM_PYTHON") or str(ROOT / ".venv-vllm/bin/python")
HELLO = [{"role": "user", "content": "hello world"}]
CPU_OPTIONS = {
    "python": VLLM_PYTHON,
    "dtype": "float32",
    "max_model_len": 512,
    "kv_cache_memory_bytes": "64M",
    "startup_timeout_s": 300,
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(VLLM_PYTHON).exists(),
        reason=f"no vLLM interpreter at {VLLM_PYTHON}: run scripts/setup-vllm-venv.sh "
        "or set MODELPORT_VLLM_PYTHON",
    ),
]


def vllm_spec(path: Path, **options: object) -> ResolvedSpec:
    return ResolvedSpec(
        uid="tiny-vllm",
        model_name="tiny",
        model_type="llm",
        engine="vllm",
        model_format="pytorch",
        model_path=str(path),
        engine_options={**CPU_OPTIONS, **options},
    )


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_until_gone(pgid: int, limit_s: float = 60.0) -> list[int]:
    """Poll until the group is empty (a bound, not a timing assertion); return what is left."""
    deadline = time.monotonic() + limit_s
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="module")
def scripted_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama that always answers with text then two Hermes calls (<tool_call> tags)."""
    return build_scripted_llama(tmp_path_factory.mktemp("scripted") / "model")


def test_match_and_command(llama_path: Path, scripted_path: Path, tmp_path: Path) -> None:
    assert VllmEngine.match(vllm_spec(llama_path)) == (True, "")
    gguf = vllm_spec(tmp_path).model_copy(update={"model_format": "gguf"})
    ok, reason = VllmEngine.match(gguf)
    assert not ok and "llama.cpp" in reason
    ok, reason = VllmEngine.match(vllm_spec(tmp_path))
    assert not ok and "config.json" in reason

    cpu = VllmEngine(vllm_spec(llama_path, port=8123)).command()
    assert cpu[:3] == [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server"]
    assert "--enforce-eager" in cpu and cpu[cpu.index("--kv-cache-memory-bytes") + 1] == "64M"
    assert cpu[cpu.index("--served-model-name") + 1] == "tiny-vllm"
    assert cpu[cpu.index("--port") + 1] == "8123"
    assert "--enable-auto-tool-choice" not in cpu  # ChatML without tools: no call format
    # the tool-call parser follows the call format the chat template writes, or the option
    tools = VllmEngine(vllm_spec(scripted_path)).command()
    assert tools[tools.index("--enable-auto-tool-choice") + 1 :][:2] == [
        "--tool-call-parser",
        "hermes",
    ]
    assert (
        "--enable-auto-tool-choice"
        not in VllmEngine(vllm_spec(scripted_path, tool_parser="none")).command()
    )
    chosen = VllmEngine(vllm_spec(llama_path, tool_parser="llama3_json")).command()
    assert chosen[chosen.index("--tool-call-parser") + 1] == "llama3_json"
    gpu_spec = vllm_spec(llama_path, gpu_memory_utilization=0.8).model_copy(
        update={"device": "cuda", "gpu_idx": [0, 1], "model_format": "awq"}
    )
    gpu = VllmEngine(gpu_spec).command()
    assert "--enforce-eager" not in gpu
    assert gpu[gpu.index("--tensor-parallel-size") + 1] == "2"
    assert gpu[gpu.index("--quantization") + 1] == "awq"
    assert gpu[gpu.index("--gpu-memory-utilization") + 1] == "0.8"


# --- in-process: proxying, a killed child, unload --------------------------------------------


@pytest.fixture(scope="module")
def engine(llama_path: Path) -> VllmEngine:
    eng = VllmEngine(vllm_spec(llama_path))
    eng.load()
    yield eng
    eng.unload()


async def test_chat_is_proxied(engine: VllmEngine) -> None:
    body = {"model": "whatever", "messages": HELLO, "max_tokens": 5, "temperature": 0}
    out = await engine.chat(body)  # greedy: sampled, the 512-word model may end early
    assert out["object"] == "chat.completion"
    assert out["model"] == "tiny-vllm"
    assert out["usage"]["completion_tokens"] == 5
    # required by OpenAI's schema (openai/openai-openapi openapi.yaml: a response choice's
    # logprobs, ChatCompletionResponseMessage's refusal); vLLM's own server sends both
    choice = out["choices"][0]
    assert "logprobs" in choice and "refusal" in choice["message"]
    assert choice["message"]["refusal"] is None


async def test_stream_passes_sse_bytes_through(engine: VllmEngine) -> None:
    body = {"messages": HELLO, "max_tokens": 6, "stream": True, "temperature": 0}
    stream = await engine.chat({**body, "stream_options": {"include_usage": True}})
    raw = b"".join([chunk async for chunk in stream])
    frames = [f for f in raw.split(b"\n\n") if f]
    assert all(f.startswith(b"data: ") for f in frames)
    assert frames[-1] == b"data: [DONE]"
    events = [orjson.loads(f[6:]) for f in frames[:-1]]
    assert events[-1]["usage"]["completion_tokens"] == 6
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text


async def test_completions_are_proxied(engine: VllmEngine) -> None:
    out = await engine.completions({"prompt": "hello", "max_tokens": 3, "temperature": 0})
    assert out["object"] == "text_completion" and out["usage"]["completion_tokens"] == 3


async def test_upstream_errors_keep_their_status(engine: VllmEngine) -> None:
    with pytest.raises(EngineError) as err:
        await engine.chat({"messages": HELLO, "max_tokens": 100_000})
    assert err.value.status == 400
    assert "512" in err.value.message  # vLLM names the context limit


async def test_killed_child_is_detected_and_unload_cleans_up(engine: VllmEngine) -> None:
    assert engine.alive() and engine.status()["server"]["alive"]
    pid = engine.status()["server"]["pid"]
    assert len(group_members(pid)) >= 2  # the API server and vLLM's EngineCore
    os.kill(pid, signal.SIGKILL)
    engine.proc.wait(timeout=30)  # type: ignore[union-attr]
    assert not engine.alive()
    assert engine.status()["server"] == {
        "pid": pid,
        "port": engine.port,
        "alive": False,
        "exit_code": -signal.SIGKILL,
    }
    with pytest.raises(EngineError) as err:
        await engine.chat({"messages": HELLO, "max_tokens": 2})
    assert err.value.status == 503 and "not running" in err.value.message
    engine.unload()  # reaps the rest of the group (EngineCore may outlive its parent)
    assert wait_until_gone(pid) == []


def test_unload_stops_the_server_gracefully(llama_path: Path) -> None:
    eng = VllmEngine(vllm_spec(llama_path))
    eng.load()
    proc = eng.proc
    assert proc is not None and len(group_members(proc.pid)) >= 2
    workdir = eng._workdir
    eng.unload()
    assert proc.returncode == 0  # it exited on SIGTERM by itself, not SIGKILLed
    assert group_members(proc.pid) == []
    assert workdir is not None and not workdir.exists()
    assert not eng.alive()


# --- behind the real worker process ------------------------------------------------------------


def test_worker_serves_vllm_and_its_death_does_not_orphan_it(scripted_path: Path) -> None:
    """On the scripted model, whose template renders tools: its calls come back as OpenAI
    tool_calls, parsed by vLLM's own parser (picked from the template), streamed and not."""
    import json

    from openai import OpenAI

    spec = vllm_spec(scripted_path).model_dump()
    # available() is a classmethod and cannot see engine_options: the worker needs the env var
    env = {"MODELPORT_VLLM_PYTHON": VLLM_PYTHON}
    with WorkerProcess(spec, env=env, wait_limit_s=300) as worker:
        health = worker.health()
        assert health is not None and health["engine"] == "vllm"
        assert health["server"]["alive"] is True
        vllm_pid = health["server"]["pid"]

        client = OpenAI(base_url=f"{worker.base_url}/v1", api_key="unused")
        out = client.chat.completions.create(model="tiny-vllm", messages=HELLO, max_tokens=4)
        assert out.usage is not None and out.usage.completion_tokens == 4
        chunks = list(
            client.chat.completions.create(
                model="tiny-vllm", messages=HELLO, max_tokens=4, stream=True
            )
        )
        assert chunks[-1].choices[0].finish_reason == "length"
        tools = [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "parameters": {"type": "object", "properties": {arg: {"type": "string"}}},
                },
            }
            for name, arg in (("get_weather", "city"), ("get_time", "zone"))
        ]
        calls = [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]
        out = client.chat.completions.create(model="tiny-vllm", messages=HELLO, tools=tools)
        assert out.choices[0].finish_reason == "tool_calls"
        assert out.choices[0].message.content == TOOL_SCRIPT[0]
        got = [
            (c.function.name, json.loads(c.function.arguments))
            for c in out.choices[0].message.tool_calls
        ]
        assert got == calls
        with client.chat.completions.stream(
            model="tiny-vllm", messages=HELLO, tools=tools
        ) as stream:
            final = stream.get_final_completion()
        got = [
            (c.function.name, json.loads(c.function.arguments))
            for c in final.choices[0].message.tool_calls
        ]
        assert got == calls
        models = httpx.get(f"{worker.base_url}/v1/models").json()
        assert models["data"][0]["id"] == "tiny-vllm"

        assert worker.proc is not None
        worker.proc.kill()  # SIGKILL: no chance to unload
        worker.proc.wait()
        assert wait_until_gone(vllm_pid) == [], "vLLM outlived its worker"
