"""Settings are read one way (issue 16): only the settings modules read the environment.

Each process kind has one pydantic-settings type: the gateway's (and a node's) `gateway.settings`,
the runtime's `local_runtime.settings`, a worker's `local_runtime.worker.settings`. Anywhere else an
`os.environ`/`os.getenv` read hides a setting from config/modelport.yaml and from tests. Writes are
fine (setting a variable for a library or a child process), and so is copying the environment to
pass it to a child process; those are the exceptions below, each with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "local_runtime", "admin_ui", "modelport_wire")
SETTINGS_MODULES = {
    "gateway/settings.py",
    "local_runtime/settings.py",
    "local_runtime/worker/settings.py",
}
# (module, enclosing function): why reading the environment there is not reading a setting
EXCEPTIONS = {
    ("local_runtime/supervisor/replicas.py", "_env"): (
        "copies the environment (minus the gateway's secrets) into a worker's, which it inherits"
    ),
    ("local_runtime/engines/vllm.py", "_environment"): (
        "copies the environment into the vLLM server process the engine starts"
    ),
}
# a call on os.environ that only writes: a default for a library that reads it itself
WRITE_METHODS = {"setdefault"}


def _environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, enclosing function) of each read of os.environ or os.getenv."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, function: str, parent: ast.AST | None) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            names = {alias.name for alias in node.names} & {"environ", "getenv"}
            found.extend((node.lineno, function) for _ in names)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "getenv")
        ):
            written = isinstance(parent, ast.Subscript) and isinstance(
                parent.ctx, ast.Store | ast.Del
            )
            written |= isinstance(parent, ast.Attribute) and parent.attr in WRITE_METHODS
            if not written:
                found.append((node.lineno, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function, node)

    visit(tree, "<module>", None)
    return found


def _product_modules() -> dict[str, ast.AST]:
    return {
        path.relative_to(ROOT).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }


def test_only_settings_modules_read_the_environment() -> None:
    modules = _product_modules()
    assert len(modules) > 100  # the packages were found
    reads = [
        f"{name}:{line} in {function}()"
        for name, tree in modules.items()
        if name not in SETTINGS_MODULES
        for line, function in _environment_reads(tree)
        if (name, function) not in EXCEPTIONS
    ]
    assert reads == [], f"read these through the process's settings type: {reads}"


def test_the_exceptions_are_still_needed() -> None:
    """An exception whose read went away is removed from the list, so the list stays short."""
    modules = _product_modules()
    used = {
        (name, function)
        for name, tree in modules.items()
        for _, function in _environment_reads(tree)
    }
    assert set(EXCEPTIONS) <= used, sorted(set(EXCEPTIONS) - used)


def test_a_read_is_found() -> None:
    """The checker itself: a read is reported, a write is not."""
    source = "import os\ndef f():\n    os.environ['A'] = '1'\n    os.environ.setdefault('B', '2')\n    return os.environ.get('C'), os.getenv('D')\n"
    assert _environment_reads(ast.parse(source)) == [(5, "f"), (5, "f")]
