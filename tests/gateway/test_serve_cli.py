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


def test_forwarded_allow_ips_keys_guessing_limits_on_the_proxied_client(tmp_path):
    """Behind a trusted proxy the admin-token limit applies per real client (X-Forwarded-For);
    without the setting the header is ignored, so a client cannot forge its way out of a limit."""
    import httpx

    from tests.scale.procs import Proc, wait_for
    from tests.support.servers import free_port

    def run(trusted: str, name: str) -> tuple[int, int]:
        port = free_port()
        env = {
            "MODELPORT_HOME": str(tmp_path / name),
            "MODELPORT_ADMIN_TOKEN": "proxy-test-admin-token-0123",
            "MODELPORT_RUNTIME_ENABLED": "false",
            "MODELPORT_ADMIN_TOKEN_FAILURES": "3",
            "MODELPORT_FORWARDED_ALLOW_IPS": trusted,
        }
        proc = Proc([MODELPORT, "serve", "--port", str(port)], env, tmp_path / f"{name}.log")
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, "serve", 60)
            for _ in range(3):
                r = httpx.get(
                    f"{url}/api/channel/",
                    headers={"Authorization": "wrong", "X-Forwarded-For": "10.1.1.1"},
                )
                assert r.status_code == 401
            attacker = httpx.get(
                f"{url}/api/channel/",
                headers={"Authorization": "wrong", "X-Forwarded-For": "10.1.1.1"},
            ).status_code
            other = httpx.get(
                f"{url}/api/channel/",
                headers={
                    "Authorization": "proxy-test-admin-token-0123",
                    "X-Forwarded-For": "10.2.2.2",
                },
            ).status_code
            return attacker, other
        finally:
            proc.stop()

    assert run("127.0.0.1", "trusted") == (429, 200)  # limited per forwarded client
    assert run("", "untrusted") == (429, 429)  # one address: the header is not believed
