"""No orphans: workers die with the gateway, even when the gateway is SIGKILLed.

The gateway runs as a real `modelport serve` process here (a gateway in a test thread cannot be
killed without killing the test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support.servers import free_port
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = [
    pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux"),
]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def wait(check: object, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def serve(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "MODELPORT_HOME": str(home),
        "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
        "MODELPORT_PORT": str(port),
        "MODELPORT_RUNTIME_ENABLED": "true",
    }
    cmd = [sys.executable, "-c", "from gateway.cli import main; main()", "serve"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, "modelport serve exited"
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait(up, "modelport serve", 120)
    return proc, url


def launch_two(url: str) -> list[int]:
    admin = {"Authorization": ADMIN_TOKEN}
    body = {"model_name": "smollm2-135m-instruct", "model_uid": "w", "model_engine": "fake"}
    resp = httpx.post(f"{url}/v1/models", json={**body, "replica": 2}, headers=admin, timeout=120)
    assert resp.status_code == 200, resp.text
    info = httpx.get(f"{url}/api/runtime/instances/w", headers=admin).json()["data"]
    return [r["pid"] for r in info["replicas"]]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_gateway(tmp_path: Path, sig: signal.Signals) -> None:
    proc, url = serve(tmp_path)
    try:
        pids = launch_two(url)
        assert not any(gone(p) for p in pids)
        proc.send_signal(sig)
        proc.wait(60)
        wait(lambda: all(gone(p) for p in pids), f"the workers to die after {sig.name}")
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "logs" / "w-0.log").read_text()
    if sig == signal.SIGTERM:
        assert "worker exited with status 0" in log  # stopped cleanly, not killed
