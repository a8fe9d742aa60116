"""Figures, tables and JSON results shared by every benchmark.

Each benchmark prints one markdown table and writes the same numbers, with the machine and the
exact command, to bench/<area>/results/<name>.json, so a README table can be traced to a run.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for an empty sample (a failed run shows as such)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def machine() -> dict[str, Any]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in lscpu.splitlines()
                if ln.startswith("Model name")
            ),
            "",
        )
    except OSError:
        model = ""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
    }


def command() -> str:
    return "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]
    )


def fmt(v: Any, digits: int = 1) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "n/a"
        return f"{v:,.{digits}f}"
    return str(v)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], digits: int = 1) -> str:
    """Markdown table from `rows`; `columns` is [(key, header)]."""
    out = ["| " + " | ".join(h for _, h in columns) + " |"]
    out.append("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(k, ""), digits) for k, _ in columns) + " |")
    return "\n".join(out)


def write_results(area: str, name: str, payload: dict[str, Any], markdown: str) -> Path:
    out_dir = ROOT / "bench" / area / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    doc = {
        "benchmark": f"bench/{area}/{name}",
        "command": command(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        **payload,
        "markdown": markdown,
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path
