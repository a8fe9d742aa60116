"""`modelport serve` refuses a busy port at once, before it migrates, launches or loads anything."""

from __future__ import annotations

import os
import socket
import subprocess

from tests.scale.procs import MODELPORT


def test_a_busy_port_is_a_clear_error_before_any_model_loads(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            **os.environ,
            "MODELPORT_HOME": str(tmp_path / "home"),
            "MODELPORT_STARTER": "1",  # would launch three models if it got that far
            "MODELPORT_ADMIN_TOKEN": "busy-port-test-admin-token",
        }
        out = subprocess.run(
            [MODELPORT, "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1, out.stderr
    assert f"port {port} is in use: stop the other server or pass --port" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "home" / "modelport.db").exists()  # nothing migrated
    assert not (tmp_path / "home" / "logs").exists()  # no worker started
