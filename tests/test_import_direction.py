"""The import direction between the runtime and the gateway (issue 16).

`local_runtime` is a library that never imports `gateway` or `admin_ui` (not even inside a
function), so it runs without them (tests/local_runtime/test_library.py runs it so). The gateway
and the admin UI may use the runtime's public types, listed below with the module that uses them,
as a ratchet: the test fails when a new use appears (compose it in gateway/runtime_host instead,
or add it here with a reason) and when a listed one is gone (so the list stays true). Only the
composition layer (gateway/runtime_host/, and gateway/app.py and gateway/cli.py that load it)
is free to import both.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GATEWAY_TO_RUNTIME = {
    # node placement validates and stores LaunchSpecs
    ("gateway/cluster/api.py", "local_runtime.spec"),
    ("gateway/cluster/launch.py", "local_runtime.spec"),
    # gateways derive the keys of the workers they call (local_runtime.keys)
    ("gateway/cluster/secret.py", "local_runtime.keys"),
    # the gateway checks and sweeps the image links its workers sign
    ("gateway/relay/images/files.py", "local_runtime.image_links"),
}

# where the two halves meet: free to import both
COMPOSITION = (
    "gateway/app.py",
    "gateway/cli.py",
    "gateway/compose.py",
    "gateway/services.py",  # the typed services object names the runtime's and the UI's parts
    "gateway/runtime_host/",
)


def crossings(packages: tuple[str, ...], targets: tuple[str, ...]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(COMPOSITION):
                continue
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                names: list[str] = []
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    # `from package import module` names the module
                    top = "." not in node.module
                    names = [f"{node.module}.{a.name}" if top else node.module for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    if name.split(".")[0] in targets:
                        found.add((rel, name))
    return found


def test_runtime_imports_nothing_of_the_gateway() -> None:
    assert crossings(("local_runtime",), ("gateway", "admin_ui")) == set()


def test_gateway_imports_no_new_runtime_module() -> None:
    found = crossings(("gateway", "admin_ui"), ("local_runtime",))
    assert found - GATEWAY_TO_RUNTIME == set(), "new gateway -> runtime imports: compose instead"
    assert GATEWAY_TO_RUNTIME - found == set(), "gone: remove them from GATEWAY_TO_RUNTIME"
