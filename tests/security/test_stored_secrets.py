"""Secrets at rest, read where they rest: the admin password is an argon2id hash in its database
row, and a channel's upstream key is nowhere in the database files in clear (README, Security
model: "channel keys are encrypted at rest", "admin passwords are hashed with argon2")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from argon2 import PasswordHasher

from tests.admin_ui.helpers import PASSWORD, UIClient
from tests.conftest import Gateway

UPSTREAM_KEY = "sk-upstream-key-that-must-never-rest-in-clear-0123456789"
MSG = [{"role": "user", "content": "hi"}]


def _database_bytes(home: Path) -> bytes:
    """The SQLite database with its journal files: everything that is on disk."""
    return b"".join(p.read_bytes() for p in sorted(home.glob("modelport.db*")))


def test_admin_password_is_stored_as_an_argon2id_hash(make_gateway, tmp_path: Path) -> None:
    gw: Gateway = make_gateway(home=tmp_path)
    assert UIClient(gw.url).setup().status_code == 303
    with sqlite3.connect(tmp_path / "modelport.db") as db:
        rows = db.execute("SELECT username, password_hash FROM adminuser").fetchall()
    assert [r[0] for r in rows] == ["admin"]
    stored = rows[0][1]
    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, PASSWORD)
    assert PASSWORD.encode() not in _database_bytes(tmp_path)


def test_channel_keys_are_encrypted_at_rest(make_gateway, fake_upstream, tmp_path: Path) -> None:
    gw: Gateway = make_gateway(home=tmp_path)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m", key=UPSTREAM_KEY)
    gw.openai(gw.create_token()).chat.completions.create(model="m", messages=MSG)
    # the key works (the upstream received it) ...
    assert fake_upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # ... and neither the row nor any byte of the database files holds it
    with sqlite3.connect(tmp_path / "modelport.db") as db:
        (stored,) = db.execute("SELECT key_enc FROM channel WHERE name = 'up'").fetchone()
    assert stored and UPSTREAM_KEY not in stored
    on_disk = _database_bytes(tmp_path)
    assert UPSTREAM_KEY.encode() not in on_disk
    assert UPSTREAM_KEY[-20:].encode() not in on_disk  # not even a recognisable part
