"""`modelport node` reads its token through the settings type (MODELPORT_NODE_TOKEN), never argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.runtime_host.node import read_token


def test_the_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_NODE_TOKEN", "  node-secret \n")
    assert read_token(None) == "node-secret"


def test_a_token_file_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELPORT_NODE_TOKEN", "from-env")
    (tmp_path / "token").write_text("from-file\n")
    assert read_token(tmp_path / "token") == "from-file"


def test_no_token_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELPORT_NODE_TOKEN", raising=False)
    monkeypatch.setenv("MODELPORT_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(SystemExit, match="set MODELPORT_NODE_TOKEN"):
        read_token(None)
