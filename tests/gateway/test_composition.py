"""Typed composition (issue 16): one services object on app.state, explicit factories.

`app.state` holds `services` (gateway.services) and nothing else of ours, so a new service is a
typed field built by a factory, not an ad-hoc attribute set somewhere at startup. And the
cluster's factory composes with other objects only through their constructors and methods: it
assigns no attribute of an object it did not create (before issue 16 it rebound
`routes.set_local`, `auth.invalidate`, `reload_routes`, `monitor.reload_routes` and the
dispatcher's `on_disable` to add publishing).
"""

from __future__ import annotations

import ast
from pathlib import Path

from gateway.app import create_app
from gateway.services import Services
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_app_state_holds_only_the_services(tmp_path: Path) -> None:
    """Starlette's State keeps its attributes in `_state`; ours is `services` alone, before and
    after the lifespan ran (no factory or startup step adds one)."""
    from fastapi.testclient import TestClient

    settings = Settings(home=tmp_path, db_url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite3")
    app = create_app(settings)
    assert set(app.state._state) == {"services"}
    assert isinstance(app.state.services, Services)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert set(app.state._state) == {"services"}
    assert set(app.state._state) == {"services"}


def foreign_assignments(path: Path) -> list[str]:
    """`X.attr = ...` where X is not `self` nor an object built in the same function."""
    found: list[str] = []
    tree = ast.parse(path.read_text(), str(path))
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        built = {"self"}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                built |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(fn):
            targets: list[ast.expr] = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute):
                    base = target.value
                    if not (isinstance(base, ast.Name) and base.id in built):
                        found.append(f"{path.name}:{node.lineno} {ast.unparse(target)}")
    return found


def test_cluster_integration_rebinds_nothing() -> None:
    assert foreign_assignments(ROOT / "gateway/cluster/integration.py") == []


def test_the_check_sees_a_rebinding(tmp_path: Path) -> None:
    """What the cluster integration did before issue 16 is caught."""
    old = tmp_path / "old.py"
    old.write_text(
        "def install(state, registry):\n"
        "    routes = state.routes\n"
        "    routes.set_local = registry.set_local\n"
        "    state.auth.invalidate = lambda: None\n"
    )
    assert foreign_assignments(old) == [
        "old.py:3 routes.set_local",
        "old.py:4 state.auth.invalidate",
    ]


def test_the_runtime_front_swaps_no_method() -> None:
    """Before, HostRuntime replaced the supervisor's `start`, and in the processes without the
    host lock its `launch`, `terminate`, `instances` and `instance`; the front
    (gateway.runtime_host.front) now picks the supervisor or the proxy once, at start."""
    for name in ("host.py", "front.py"):
        assert foreign_assignments(ROOT / "gateway/runtime_host" / name) == []


def test_compose_wires_the_dispatcher_through_a_method() -> None:
    """compose() set `core.dispatcher.not_ready` from outside; it calls `explain_unrouted` (the
    dispatcher is built before the model directory that answers it, which sits on the relay)."""
    found = foreign_assignments(ROOT / "gateway/app.py")
    assert [f.split(" ", 1)[1] for f in found] == ["app.state.services"]
