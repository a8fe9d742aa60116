"""vLLM as a child server process, proxied: the engine for GPU serving of Hugging Face models.

vLLM already is an OpenAI server with continuous batching; wrapping its Python API would copy
that server badly. So load() starts `python -m vllm.entrypoints.openai.api_server` on a loopback
port and the worker's routes proxy request bodies to it, streaming its SSE bytes straight back.

Why these choices:
- The interpreter comes from engine option `python`, else env `MODELPORT_VLLM_PYTHON`, else our
  own: vLLM pins torch/transformers versions of its own, so it usually lives in its own venv
  (scripts/setup-vllm-venv.sh).
- The child must not outlive the worker. It runs in its own process group (unload() signals the
  whole group: vLLM's EngineCore and workers are grandchildren) and gets PR_SET_PDEATHSIG=SIGTERM.
  Linux sends that signal when the *thread* that forked exits, and the worker loads engines in a
  short-lived thread, so the child is forked from a keeper thread that lives until unload().
- If the child dies (OOM killer, kill -9), alive() turns False, status() says so (the worker's
  /health carries it), and requests answer 503. Restarting is the supervisor's job.
- On CPU: --enforce-eager, a bounded KV cache (--kv-cache-memory-bytes), and TMPDIR and
  VLLM_CACHE_ROOT in a private temp dir (vLLM leaves sockets and compile caches behind).

Engine options: `python`, `port`, `dtype` (default auto), `max_model_len` (default: the spec's
context_length), `kv_cache_memory_bytes` (CPU, default "1G"), `gpu_memory_utilization`,
`tensor_parallel_size` (default: number of gpu_idx), `startup_timeout_s` (600),
`stop_grace_s` (15), `tool_parser` (vLLM's tool-call parser; default: the one whose format the
chat template writes, see `tool_parser()`; "none" turns tool calls off), `extra_args` (list of
strings appended to the command line).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local_runtime.engines import base
from local_runtime.engines.base import Engine, EngineError
from local_runtime.settings import RuntimeSettings
from local_runtime.spec import ResolvedSpec

if TYPE_CHECKING:
    import httpx

_BY_TYPE = {
    "llm": frozenset({base.CHAT, base.COMPLETIONS}),
    "embedding": frozenset({base.EMBEDDINGS}),
}
_PR_SET_PDEATHSIG = 1
# How a chat template writes a tool call -> vLLM's parser for it; the first marker found wins
# (Qwen3-Coder's XML calls also sit in <tool_call> tags).
_TOOL_FORMATS = (
    ("<function=", "qwen3_coder"),
    ("<tool_call>", "hermes"),
    ("<|python_tag|>", "llama3_json"),
    ("[TOOL_CALLS]", "mistral"),
)
_LOG_TAIL = 4000


def tool_parser(model_path: str, options: dict[str, Any]) -> str | None:
    """vLLM's tool-call parser for a checkpoint: engine option `tool_parser` ("none": off), else
    the one for the call format its chat template writes. Without one vLLM answers any request
    with `tools` with a 400, so a model whose template renders tools gets one by default."""
    chosen = options.get("tool_parser")
    if chosen is not None:
        return None if str(chosen) in ("", "none") else str(chosen)
    template = _chat_template(Path(model_path))
    return next((parser for marker, parser in _TOOL_FORMATS if marker in template), None)


def _chat_template(folder: Path) -> str:
    """The checkpoint's chat template text(s): chat_template.jinja or tokenizer_config.json."""
    import json

    jinja = folder / "chat_template.jinja"
    parts = [jinja.read_text()] if jinja.is_file() else []
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        config = {}
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, str):
        parts.append(template)
    elif isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        parts += [str(t.get("template", "")) for t in template if isinstance(t, dict)]
    return "\n".join(parts)


def vllm_python(options: dict[str, Any] | None = None) -> str:
    """The interpreter that runs vLLM."""
    return str((options or {}).get("python") or RuntimeSettings().vllm_python or sys.executable)


def _has_vllm(python: str) -> bool:
    """Whether `python` can import vllm; a file lookup in venvs (cheap for catalog listings)."""
    exe = Path(python)
    venv = exe.parent.parent
    if (venv / "pyvenv.cfg").is_file():
        return any(venv.glob("lib/python3*/site-packages/vllm/__init__.py"))
    if exe.absolute() == Path(sys.executable).absolute():
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        return subprocess.run([python, "-c", probe], timeout=60, check=False).returncode == 0  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return False


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM us when the forking thread (our keeper) goes away."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VllmEngine(Engine):
    name = "vllm"
    model_types = frozenset(_BY_TYPE)
    capabilities = frozenset().union(*_BY_TYPE.values())
    requires = "vllm"
    external_server = True

    def __init__(self, spec: ResolvedSpec) -> None:
        super().__init__(spec)
        self.capabilities = _BY_TYPE.get(spec.model_type, frozenset())  # type: ignore[misc]
        self.options = spec.engine_options
        self.python = vllm_python(self.options)
        self.port = int(self.options.get("port") or 0)
        self.proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_path: Path | None = None
        self._keeper_stop = threading.Event()
        self._client: httpx.AsyncClient | None = None

    # --- discovery -------------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        python = vllm_python()
        if not Path(python).exists():
            return False, f"MODELPORT_VLLM_PYTHON={python} does not exist"
        if not _has_vllm(python):
            return False, (
                f"vllm is not installed for {python}; run scripts/setup-vllm-venv.sh and set "
                "MODELPORT_VLLM_PYTHON=.venv-vllm/bin/python (or pip install 'modelport[vllm]')"
            )
        return True, ""

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        ok, reason = super().match(spec)
        if not ok:
            return ok, reason
        if spec.model_format not in ("pytorch", "awq", "gptq"):
            hint = " (use llama.cpp for GGUF)" if spec.model_format == "gguf" else ""
            return False, f"vllm serves Hugging Face folders, not {spec.model_format}{hint}"
        if not (Path(spec.model_path) / "config.json").is_file():
            return (
                False,
                f"vllm needs a Hugging Face model folder with config.json; {spec.model_path} has none",
            )
        return True, ""

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        spec, opts = self.spec, self.options
        cuda = spec.device.startswith(("cuda", "gpu"))
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server"]
        cmd += ["--model", spec.model_path, "--served-model-name", spec.uid]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--dtype", str(opts.get("dtype", "auto"))]
        max_len = opts.get("max_model_len") or spec.context_length
        if max_len:
            cmd += ["--max-model-len", str(max_len)]
        if spec.model_format in ("awq", "gptq"):
            cmd += ["--quantization", spec.model_format]
        if spec.trust_remote_code:
            cmd.append("--trust-remote-code")
        if spec.model_type == "embedding":
            cmd += ["--runner", "pooling"]
        elif parser := tool_parser(spec.model_path, opts):
            cmd += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
        if cuda:
            tp = int(opts.get("tensor_parallel_size") or len(spec.gpu_idx or []) or 1)
            if tp > 1:
                cmd += ["--tensor-parallel-size", str(tp)]
            if opts.get("gpu_memory_utilization"):
                cmd += ["--gpu-memory-utilization", str(opts["gpu_memory_utilization"])]
        else:
            cmd += ["--enforce-eager"]
            cmd += ["--kv-cache-memory-bytes", str(opts.get("kv_cache_memory_bytes", "1G"))]
        cmd += [str(a) for a in opts.get("extra_args", [])]
        return cmd

    def _environment(self, workdir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["TMPDIR"] = str(workdir)
        if not self.spec.device.startswith(("cuda", "gpu")):
            env["VLLM_CACHE_ROOT"] = str(workdir / "cache")
        env.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder; never phone home
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def load(self) -> None:
        if not self.port:
            self.port = _free_port()
        self._workdir = Path(tempfile.mkdtemp(prefix=f"modelport-vllm-{self.spec.uid[:40]}-"))
        self._log_path = self._workdir / "vllm.log"
        self.proc = self._spawn(self.command(), self._environment(self._workdir))
        try:
            self._wait_ready(float(self.options.get("startup_timeout_s", 600)))
        except BaseException:
            self.unload()
            raise

    def _spawn(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Fork from a keeper thread that lives until unload() (see the module docstring)."""
        handoff: queue.Queue[subprocess.Popen[bytes] | OSError] = queue.Queue()
        assert self._log_path is not None
        log_path = self._log_path

        def keeper() -> None:
            try:
                with log_path.open("wb") as log:
                    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=str(log_path.parent),
                        start_new_session=True,
                        preexec_fn=_die_with_parent,
                    )
            except OSError as exc:
                handoff.put(exc)
                return
            handoff.put(proc)
            self._keeper_stop.wait()

        threading.Thread(target=keeper, name=f"vllm-keeper-{self.spec.uid}", daemon=True).start()
        got = handoff.get()
        if isinstance(got, OSError):
            raise RuntimeError(f"cannot start vLLM with {self.python}: {got}")
        return got

    def log_tail(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as f:
            f.seek(max(0, self._log_path.stat().st_size - _LOG_TAIL))
            return f.read().decode("utf-8", "replace")

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                assert self.proc is not None
                code = self.proc.poll()
                if code is not None:
                    raise RuntimeError(
                        f"vLLM exited with code {code} while starting:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.base_url}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"vLLM was not ready after {timeout:.0f}s:\n{self.log_tail()}"
                    )
                time.sleep(0.5)

    def alive(self) -> bool:
        """Whether the vLLM server process is still running (not whether it is healthy)."""
        return self.proc is not None and self.proc.poll() is None

    def unload(self) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after the grace period."""
        proc, self.proc = self.proc, None
        if proc is not None:
            grace = float(self.options.get("stop_grace_s", 15))
            _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _group_alive(proc.pid):
                proc.poll()  # reap the leader so the group can empty
                time.sleep(0.1)
            if _group_alive(proc.pid):
                _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._keeper_stop.set()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._client = None

    def status(self) -> dict[str, Any]:
        proc = self.proc
        return {
            "server": {
                "pid": proc.pid if proc else None,
                "port": self.port,
                "alive": self.alive(),
                "exit_code": proc.poll() if proc else None,
            }
        }

    # --- proxy -----------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(None, connect=5.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )
        return self._client

    def _dead(self) -> EngineError:
        code = self.proc.poll() if self.proc else None
        return EngineError(
            f"the vLLM server for {self.spec.uid!r} is not running (exit code {code}); "
            "the supervisor restarts it",
            status=503,
            code="engine_dead",
        )

    async def _proxy(
        self, path: str, body: dict[str, Any]
    ) -> dict[str, Any] | AsyncIterator[bytes]:
        import httpx

        if not self.alive():
            raise self._dead()
        body = {**body, "model": self.spec.uid}  # vLLM checks the name it was started with
        client = self._http()
        request = client.build_request("POST", path, json=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise (
                self._dead()
                if not self.alive()
                else EngineError(
                    f"vLLM did not answer: {exc}", status=502, code="engine_unreachable"
                )
            ) from exc
        if response.status_code >= 400:
            raw = await response.aread()
            await response.aclose()
            raise _upstream_error(response.status_code, raw)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return _pass_through(response)
        try:
            raw = await response.aread()
        finally:
            await response.aclose()
        import orjson

        return orjson.loads(raw)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        return await self._proxy("/v1/chat/completions", body)

    async def completions(self, body: dict[str, Any]) -> dict[str, Any] | AsyncIterator[bytes]:
        return await self._proxy("/v1/completions", body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        result = await self._proxy("/v1/embeddings", {**body, "stream": False})
        assert isinstance(result, dict)
        return result


async def _pass_through(response: httpx.Response) -> AsyncIterator[bytes]:
    """vLLM's SSE bytes, unchanged (already framed, ending with data: [DONE])."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()  # the client left: closing the connection aborts the request


def _upstream_error(status: int, raw: bytes) -> EngineError:
    import orjson

    message, code = raw.decode("utf-8", "replace")[:2000], "vllm_error"
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        err = orjson.loads(raw)
        err = err.get("error", err) if isinstance(err, dict) else err
        message = str(err.get("message") or message)
        code = str(err.get("code") or err.get("type") or code)
    return EngineError(message, status=status, code=code)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
