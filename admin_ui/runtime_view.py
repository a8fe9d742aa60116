"""What the UI shows of the local runtime (the services' runtime, a Supervisor, and catalog).

`describe` turns the supervisor's instance description into the few numbers the pages show
(memory summed over replicas, a progress fraction), so templates stay free of arithmetic.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from gateway.services import services_of


def runtime_of(request: Request) -> Any:
    return services_of(request).runtime


def catalog_of(request: Request) -> Any:
    return services_of(request).catalog


def describe(d: dict[str, Any]) -> dict[str, Any]:
    replicas = d.get("replicas") or []
    rss = [r.get("rss_bytes") for r in replicas if r.get("rss_bytes")]
    uptimes = [r.get("uptime_s") for r in replicas if r.get("uptime_s") is not None]
    progress = d.get("progress") or {}
    total, done = progress.get("bytes_total") or 0, progress.get("bytes_done") or 0
    return {
        **d,
        "replica_rows": replicas,
        "memory_mb": sum(rss) // (1024 * 1024) if rss else None,
        "uptime_s": int(max(uptimes)) if uptimes else None,
        "stage": progress.get("stage") if d.get("status") == "loading" else None,
        "fraction": (done / total) if total else None,
        "elapsed_s": progress.get("elapsed_s"),
    }


async def instances(request: Request) -> list[dict[str, Any]]:
    runtime = runtime_of(request)
    if runtime is None:
        return []
    return [describe(i) for i in runtime.instances()]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{s}s"
