"""The async engine and sessions, and running migrations at start.

SQLite (default) gets WAL and a busy timeout so concurrent writers queue instead of failing;
PostgreSQL gets a pool of `pool_size` + `max_overflow` connections per process (settings
db_pool_size, db_max_overflow: deploy/README.md adds them up for a layout), and a caller that
waits `pool_timeout` for one in vain is logged at WARNING and counted (`_WatchedPool.exhausted`,
the metric modelport_db_pool_exhausted) before its 503, so exhaustion is never silent. Migrations run with a synchronous engine under a lock (a PostgreSQL
advisory lock, or an flock beside the SQLite file), so processes starting together (replicas,
`serve --workers N`) upgrade the schema exactly once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger("modelport.db")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ADVISORY_LOCK_ID = 0x6D6F64656C  # "model"


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://) and pick async-capable drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def sync_url(url: str) -> str:
    u = make_url(normalise_url(url))
    if u.drivername == "sqlite+aiosqlite":
        u = u.set(drivername="sqlite")
    return u.render_as_string(hide_password=False)


def private_sqlite_file(path: str) -> None:
    """Create the SQLite database owner-only (0600) before SQLite does (it would follow the
    umask, typically 0644: every local user could read hashed keys, encrypted channel keys and
    usage). SQLite gives its -wal and -shm files the database file's mode."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class _WatchedPool(AsyncAdaptedQueuePool):
    """The async queue pool, counting and logging every caller it had to turn away."""

    exhausted = 0  # per pool instance once incremented (a class default of 0)

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except sa_exc.TimeoutError:
            self.exhausted += 1
            log.warning(
                "database pool exhausted: all %d connections busy for %.0fs (db_pool_size %d + "
                "db_max_overflow %d); raise them, or PostgreSQL's max_connections "
                "(deploy/README.md: connections per layout)",
                self.size() + self._max_overflow,
                self._timeout,
                self.size(),
                self._max_overflow,
            )
            raise


def pool_exhausted(engine: AsyncEngine) -> int:
    """How many callers found no free connection in time (0 for SQLite's pool)."""
    return int(getattr(engine.sync_engine.pool, "exhausted", 0))


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 5, pool_timeout: float = 10.0
) -> AsyncEngine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            private_sqlite_file(path)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        poolclass=_WatchedPool,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the schema to the newest revision (safe to call from several replicas at once)."""
    surl = sync_url(url)
    if surl.startswith("sqlite"):
        path = make_url(surl).database
        if not path or path == ":memory:":
            command.upgrade(alembic_config(url), "head")
            return
        private_sqlite_file(path)
        # the kernel drops the lock if this process dies, so a crash never wedges the next start
        with open(f"{path}.migrate.lock", "ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            command.upgrade(alembic_config(url), "head")
        return
    engine = create_engine(surl)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            try:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()
