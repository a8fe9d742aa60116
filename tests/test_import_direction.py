"""The import direction between the runtime and the gateway (issue 16), as a ratchet.

The aim: `local_runtime` is a library that never imports `gateway` or `admin_ui`, and only a
composition layer knows both. Until the move is done, every import that crosses the line is
listed below with the module that makes it. The test fails when a new crossing appears (so the
debt cannot grow) and when a listed one is gone (so the list shrinks with the code and stays true).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (importing module, imported top-level module path) still crossing the line
RUNTIME_TO_GATEWAY = {
    ("local_runtime/api.py", "gateway.admin_api.envelope"),
    ("local_runtime/api.py", "gateway.cluster"),
    ("local_runtime/api.py", "gateway.deps"),
    ("local_runtime/api.py", "gateway.errors"),
    ("local_runtime/api.py", "gateway.upstreams.base"),
    ("local_runtime/integration.py", "gateway.db.tables"),
    ("local_runtime/integration.py", "gateway.model_info"),
    ("local_runtime/node.py", "gateway.cluster"),
    ("local_runtime/node.py", "gateway.db.engine"),
    ("local_runtime/node.py", "gateway.logging"),
    ("local_runtime/node.py", "gateway.routing"),
    ("local_runtime/node.py", "gateway.settings"),
    ("local_runtime/supervisor/core.py", "gateway.cluster.secret"),
    ("local_runtime/supervisor/core.py", "gateway.db.crud"),
    ("local_runtime/supervisor/core.py", "gateway.db.crud.channels"),
    ("local_runtime/supervisor/core.py", "gateway.model_info"),
    ("local_runtime/supervisor/core.py", "gateway.model_kinds"),
    ("local_runtime/supervisor/core.py", "gateway.routing"),
    ("local_runtime/supervisor/core.py", "gateway.settings"),
    ("local_runtime/supervisor/core.py", "gateway.upstreams.base"),
    ("local_runtime/supervisor/instance.py", "gateway.upstreams.base"),
    ("local_runtime/supervisor/upkeep.py", "gateway.settings"),
    ("local_runtime/worker/app.py", "gateway.relay.images"),
    ("local_runtime/worker/auth.py", "gateway.cluster.secret"),
    ("local_runtime/worker/media.py", "gateway.relay.images"),
}

GATEWAY_TO_RUNTIME = {
    ("admin_ui/routes/models.py", "local_runtime.catalog"),
    ("admin_ui/routes/models.py", "local_runtime.spec"),
    ("admin_ui/routes/models.py", "local_runtime.supervisor"),
    ("gateway/cluster/api.py", "local_runtime.spec"),
    ("gateway/cluster/host_runtime.py", "local_runtime.resolve"),
    ("gateway/cluster/host_runtime.py", "local_runtime.spec"),
    ("gateway/cluster/host_runtime.py", "local_runtime.supervisor"),
    ("gateway/cluster/launch.py", "local_runtime.spec"),
}

# where the two halves are meant to meet: free to import both
COMPOSITION = {"gateway/app.py", "gateway/cli.py"}


def crossings(packages: tuple[str, ...], targets: tuple[str, ...]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in COMPOSITION:
                continue
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                names: list[str] = []
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    if name.split(".")[0] in targets:
                        found.add((rel, name))
    return found


def test_runtime_imports_no_new_gateway_module() -> None:
    found = crossings(("local_runtime",), ("gateway", "admin_ui"))
    assert found - RUNTIME_TO_GATEWAY == set(), "new runtime -> gateway imports: invert them"
    assert RUNTIME_TO_GATEWAY - found == set(), "gone: remove them from RUNTIME_TO_GATEWAY"


def test_gateway_imports_no_new_runtime_module() -> None:
    found = crossings(("gateway", "admin_ui"), ("local_runtime",))
    assert found - GATEWAY_TO_RUNTIME == set(), "new gateway -> runtime imports: compose instead"
    assert GATEWAY_TO_RUNTIME - found == set(), "gone: remove them from GATEWAY_TO_RUNTIME"
