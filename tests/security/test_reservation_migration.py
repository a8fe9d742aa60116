"""Migration 0004 (quota reservations, gateway leases) builds exactly the tables the code maps,
and goes down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

from gateway.db import tables  # noqa: F401  (the tables on SQLModel.metadata)
from gateway.db.engine import alembic_config, sync_url, upgrade

OURS = ("quotareservation", "gatewaylease")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return str(request.getfixturevalue("pg_url"))


def _diffs(url: str) -> list[Any]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()
    return [d for d in diffs if any(name in repr(d) for name in OURS)]


def _tables(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migration_0004_matches_the_tables_and_goes_down_and_up(db_url):
    upgrade(db_url)
    assert set(OURS) <= _tables(db_url)
    assert _diffs(db_url) == []
    command.downgrade(alembic_config(db_url), "0003")
    assert not set(OURS) & _tables(db_url)
    upgrade(db_url)
    assert _diffs(db_url) == []
