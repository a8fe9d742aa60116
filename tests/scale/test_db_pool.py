"""Database pool exhaustion (issue 20): the pool size is a setting (db_pool_size, db_max_overflow,
db_pool_timeout_s), and a caller that finds every connection busy is logged at WARNING and
counted in modelport_db_pool_exhausted before its 503, instead of fast 503s logged below WARNING."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.conftest import Gateway


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_pool_exhaustion_is_a_warning_a_metric_and_a_503(pg_url, make_gateway):
    gw: Gateway = make_gateway(
        database_url=pg_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=0.5
    )
    engine = gw.app.state.services.engine
    assert engine.sync_engine.pool.size() == 1
    loop = gw.server.server_loop
    release = asyncio.Event()
    held = asyncio.Event()

    async def hold() -> None:
        async with engine.connect():
            held.set()
            await release.wait()

    holder = asyncio.run_coroutine_threadsafe(hold(), loop)
    asyncio.run_coroutine_threadsafe(held.wait(), loop).result(10)
    seen = _Records()
    logging.getLogger("modelport.db").addHandler(seen)
    try:
        r = httpx.post(
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": "Bearer sk-never-seen-so-the-database-is-asked"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "database_unavailable"
        warnings = [w for w in seen.records if "database pool exhausted" in w.getMessage()]
        assert warnings and warnings[0].levelno == logging.WARNING
        assert "db_pool_size 1 + db_max_overflow 0" in warnings[0].getMessage()
    finally:
        logging.getLogger("modelport.db").removeHandler(seen)
        loop.call_soon_threadsafe(release.set)
        holder.result(10)
    metrics = gw.admin.get("/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("modelport_db_pool_exhausted"))
    assert float(line.split()[-1]) >= 1


@pytest.mark.parametrize("size,overflow", [(3, 2)])
def test_the_pool_follows_the_settings(pg_url, make_gateway, size, overflow):
    gw = make_gateway(database_url=pg_url, db_pool_size=size, db_max_overflow=overflow)
    pool = gw.app.state.services.engine.sync_engine.pool
    assert (pool.size(), pool._max_overflow) == (size, overflow)
