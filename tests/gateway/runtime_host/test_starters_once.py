"""The starter models are launched once per installation, whatever the number of processes.

With `modelport serve --workers 2` on a fresh database, every process ran `launch_starters` at
start; both found no `starter_models_launched` option, both inserted it, and the loser's startup
died on the UNIQUE constraint (`Application startup failed`): the fresh-install check caught it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.db.engine import make_engine, make_sessionmaker, upgrade
from gateway.runtime_host.integration import STARTERS, launch_starters


class RecordingRuntime:
    def __init__(self) -> None:
        self.launched: list[str] = []

    async def launch(self, spec: Any, wait: bool = False) -> None:
        self.launched.append(spec.model_uid)


async def test_two_processes_starting_at_once_launch_the_starters_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'modelport.db'}"
    upgrade(url)
    engines = [make_engine(url) for _ in range(2)]  # one per process, as `--workers 2` has
    runtimes = [RecordingRuntime(), RecordingRuntime()]
    try:
        await asyncio.gather(
            *(
                launch_starters(rt, make_sessionmaker(engine))  # type: ignore[arg-type]
                for rt, engine in zip(runtimes, engines, strict=True)
            )
        )
    finally:
        for engine in engines:
            await engine.dispose()
    launched = sorted(uid for rt in runtimes for uid in rt.launched)
    assert launched == sorted(spec.model_uid for spec in STARTERS)
