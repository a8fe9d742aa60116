"""Channel and token writes have one way in: gateway.channels.service and gateway.tokens.service.

Those services announce every write (routes changed, tokens changed), so a surface that called
crud's writers itself would skip the announcement: a route table or token cache left stale, here
and on every other replica. This test reads the import graph: outside the services (and crud
itself) no module may use crud's channel or token writers, however it imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("gateway", "admin_ui", "local_runtime", "bench", "scripts")
ALLOWED = ("gateway/channels/", "gateway/tokens/", "gateway/db/crud/")
WRITERS = {
    "gateway.db.crud.channels": {
        "create_channels",
        "update_channel",
        "set_channel_fields",
        "delete_channel",
        "delete_disabled_channels",
    },
    "gateway.db.crud.tokens": {"create_token", "new_token", "update_token", "delete_token"},
}
# Not listed: crud.channels.ensure_local_channel keeps the built-in channel's row, whose routes
# come from running workers, not from the row.


def writer_uses(source: str) -> list[str]:
    """`module.writer` for every crud writer the source imports or reaches through an alias."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> crud module
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in WRITERS:
            found += [
                f"{node.module}.{a.name}" for a in node.names if a.name in WRITERS[node.module]
            ]
        elif isinstance(node, ast.ImportFrom) and node.module == "gateway.db.crud":
            for a in node.names:
                if f"gateway.db.crud.{a.name}" in WRITERS:
                    aliases[a.asname or a.name] = f"gateway.db.crud.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in WRITERS:
                    aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = ast.unparse(node.value)
            module = aliases.get(owner)
            if module and node.attr in WRITERS[module]:
                found.append(f"{module}.{node.attr}")
    return found


def test_the_scanner_sees_every_import_style():
    assert writer_uses("from gateway.db.crud.tokens import create_token") == [
        "gateway.db.crud.tokens.create_token"
    ]
    assert writer_uses(
        "from gateway.db.crud import channels as crud\nawait crud.update_channel(s, data=d)"
    ) == ["gateway.db.crud.channels.update_channel"]
    assert writer_uses("import gateway.db.crud.tokens\ngateway.db.crud.tokens.delete_token(s)") == [
        "gateway.db.crud.tokens.delete_token"
    ]
    assert writer_uses("from gateway.db.crud import channels as c\nc.all_channels(s)") == []


def test_only_the_services_write_channels_and_tokens():
    bypasses = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(ALLOWED) or "/migrations/" in rel:
                continue
            bypasses += [f"{rel}: {use}" for use in writer_uses(path.read_text())]
    assert bypasses == [], "write through ChannelService / TokenService instead:\n" + "\n".join(
        bypasses
    )
