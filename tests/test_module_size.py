"""No product module over 500 lines (issue 16, STYLE.md "Size"): past that, split by responsibility.

Starlette averages ~200 lines a module and One API ~95; the supervisor reached 550 before it was
split. This keeps the next one from growing unnoticed.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "local_runtime", "admin_ui", "modelport_wire")
LIMIT = 500


def test_no_product_module_is_over_the_limit() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert len(sizes) > 100  # the packages were found
    over = {name: n for name, n in sizes.items() if n > LIMIT}
    assert over == {}, f"split these by responsibility: {over}"
