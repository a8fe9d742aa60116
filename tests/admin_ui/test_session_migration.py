"""Migration 0002 (the admin UI's session table) on SQLite and PostgreSQL: it creates exactly the
table that gateway.db.tables.AdminSession describes, and goes down and up again."""

from __future__ import annotations

from alembic import command

from gateway.db.engine import alembic_config, upgrade
from tests.support.migrations import db_url, schema_diffs, table_names

__all__ = ["db_url"]  # the fixture, parametrised over SQLite and PostgreSQL


def test_migration_0002_matches_the_table_and_goes_down_and_up(db_url):
    upgrade(db_url)
    assert "adminsession" in table_names(db_url)
    assert schema_diffs(db_url, "adminsession") == []

    command.downgrade(alembic_config(db_url), "0001")
    assert "adminsession" not in table_names(db_url)
    assert "adminuser" in table_names(db_url)  # 0001's tables stay

    upgrade(db_url)
    assert schema_diffs(db_url, "adminsession") == []
