"""The database change log (gateway.cluster.changes.ChangeLog) on a real SQLite file: events from
before a process started are never replayed, its own events are skipped, and an event whose id
commits after a higher one (PostgreSQL sequences allow that) is still applied, once."""

from __future__ import annotations

from typing import Any

from gateway.cluster.changes import ChangeLog
from gateway.db.engine import make_engine, make_sessionmaker, upgrade
from gateway.db.tables import ClusterEvent


async def test_change_log_applies_each_foreign_event_once(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    got: list[dict[str, Any]] = []

    async def apply(msg: dict[str, Any]) -> None:
        got.append(msg)

    async def insert(event_id: int, origin: str, kind: str) -> None:
        async with sessions() as s:
            s.add(ClusterEvent(id=event_id, origin=origin, kind=kind, data='{"channel_id": 7}'))
            await s.commit()

    try:
        await insert(10, "other", "drop_channel")  # before this process: never replayed
        log = ChangeLog(sessions, "me", apply)
        await log.start()
        assert await log.poll() == 0

        await insert(12, "other", "routes")
        await insert(13, "me", "routes")  # our own: skipped
        assert await log.poll() == 1
        await insert(11, "other", "tokens")  # a lower id committed late
        assert await log.poll() == 1
        assert await log.poll() == 0  # nothing twice
        assert got == [
            {"channel_id": 7, "kind": "routes"},
            {"channel_id": 7, "kind": "tokens"},
        ]
        await log.close()
    finally:
        await engine.dispose()
