"""Migration 0004 (quota reservations, gateway leases) builds exactly the tables the code maps,
and goes down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command

from gateway.db.engine import alembic_config, upgrade
from tests.support.migrations import db_url, schema_diffs, table_names

__all__ = ["db_url"]  # the fixture, parametrised over SQLite and PostgreSQL

OURS = ("quotareservation", "gatewaylease")


def test_migration_0004_matches_the_tables_and_goes_down_and_up(db_url):
    upgrade(db_url)
    assert set(OURS) <= table_names(db_url)
    assert schema_diffs(db_url, *OURS) == []
    command.downgrade(alembic_config(db_url), "0003")
    assert not set(OURS) & table_names(db_url)
    upgrade(db_url)
    assert schema_diffs(db_url, *OURS) == []
