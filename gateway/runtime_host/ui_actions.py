"""What the admin UI's models page does with the local runtime and its catalog.

admin_ui imports no local_runtime module (tests/test_import_direction.py): the launch form's
spec, the runtime's refusals and the catalog's offline statuses are composed here and reach the
page as plain values and one exception, `Refused`, whose message the page flashes. `runtime` and
`catalog` are the services' (None where the runtime is disabled).
"""

from __future__ import annotations

from typing import Any

from local_runtime.catalog import CatalogError, Family, offline
from local_runtime.spec import LaunchSpec
from local_runtime.supervisor import LaunchError, UnknownInstance


class Refused(Exception):
    """The runtime or the catalog said no; the message says why, for the user."""


def family_statuses(families: list[Family], home: Any) -> dict[str, str]:
    """Per family: "ready: ..." or "download ~N GB" (the CLI's words). Looks at files on disk:
    call it off the event loop."""
    # rows() reads the runtime's settings once for all families (per family was most of the time)
    return {row["name"]: offline.describe(row) for row in offline.rows(families, home)}


async def launch(runtime: Any, fields: dict[str, Any]) -> str:
    """Starts a launch without waiting for it (the page shows progress while files download and
    the worker loads) and returns its UID. A form that is no LaunchSpec raises pydantic's
    ValidationError."""
    spec = LaunchSpec.model_validate(fields)
    try:
        await runtime.launch(spec, wait=False)
    except LaunchError as exc:
        raise Refused(str(exc)) from exc
    return spec.uid


async def terminate(runtime: Any, uid: str) -> bool:
    """False when `uid` is not running here."""
    if runtime is None:
        return False
    try:
        await runtime.terminate(uid)
    except UnknownInstance:
        return False
    return True


def logs(runtime: Any, uid: str, *, lines: int) -> dict[str, Any]:
    """The last `lines` of each replica's log; empty when `uid` is not running here."""
    if runtime is None:
        return {}
    try:
        by_replica: dict[str, Any] = runtime.logs(uid, lines=lines)
    except UnknownInstance:
        return {}
    return by_replica


def register_path(
    catalog: Any, name: str, path: str, model_type: str | None, engine: str | None
) -> Family:
    """A custom family from local files (type and format inferred from what is there)."""
    try:
        family: Family = catalog.register_path(name, path, model_type, engine=engine)
    except CatalogError as exc:
        raise Refused(str(exc)) from exc
    return family
