"""`MODELPORT_ENV=production` refuses to start without explicit secrets (README, Security model;
gateway/settings.py), as a real `modelport serve` process: it exits with a message naming what is
missing, before it creates a database or listens; with both secrets it serves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.scale.procs import MODELPORT, Proc, wait_for
from tests.support.servers import free_port

ADMIN = "production-admin-token-0123456789"
SECRET = "production-secret-key-0123456789abcdef"
SECRETS = ("MODELPORT_ADMIN_TOKEN", "MODELPORT_SECRET_KEY")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return {
        **env,
        "MODELPORT_ENV": "production",
        "MODELPORT_HOME": str(home),
        "MODELPORT_RUNTIME_ENABLED": "false",
        **extra,
    }


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, SECRETS),
        ({"MODELPORT_ADMIN_TOKEN": ADMIN}, ("MODELPORT_SECRET_KEY",)),
        ({"MODELPORT_SECRET_KEY": SECRET}, ("MODELPORT_ADMIN_TOKEN",)),
    ],
)
def test_production_refuses_to_start_without_secrets(tmp_path: Path, given, missing) -> None:
    home = tmp_path / "home"
    port = free_port()
    out = subprocess.run(
        [MODELPORT, "serve", "--port", str(port)],
        env=_env(home, **given),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "MODELPORT_ENV=production needs explicit secrets" in out.stderr, out.stderr
    for name in missing:
        assert name in out.stderr
    for name in set(SECRETS) - set(missing):
        assert f"set {name}" not in out.stderr and f", {name}" not in out.stderr
    assert not (home / "modelport.db").exists() and not (home / "secret.key").exists()


def test_production_starts_with_both_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {"MODELPORT_ADMIN_TOKEN": ADMIN, "MODELPORT_SECRET_KEY": SECRET}
    proc = Proc([MODELPORT, "serve", "--port", str(port)], _env(home, **env), tmp_path / "log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.alive() and httpx.get(f"{url}/health").status_code == 200, "serve")
        status = httpx.get(f"{url}/api/token/", headers={"Authorization": ADMIN})
        assert status.status_code == 200 and status.json()["success"]
        assert not (home / "secret.key").exists()  # the given key is used, none generated
    finally:
        proc.stop()
