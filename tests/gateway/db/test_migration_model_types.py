"""Migration 0006 (channel.model_types) on SQLite and PostgreSQL: the column matches the table,
kinds a channel declared in its config (`config.model_types`, the old words) move into it in the
new words, and it goes down and up again."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import create_engine, text

from gateway.db.engine import alembic_config, sync_url, upgrade
from tests.support.migrations import db_url

__all__ = ["db_url"]  # the fixture, parametrised over SQLite and PostgreSQL


def _run(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_declared_types_move_into_the_column(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0005")
    config = {"model_types": {"m-a": "llm", "m-b": "audio", "m-c": "rerank"}, "test_model": "m-a"}
    _run(
        db_url,
        "INSERT INTO channel (type, name, key_enc, base_url, models, model_mapping, "
        '"group", priority, weight, status, config, other, system_prompt, created_time, '
        "test_time, response_time, used_quota, balance, last_error, builtin) VALUES (50, 'c', '', "
        "'', 'm-a,m-b,m-c', '{}', 'default', 0, 1, 1, :config, '', '', 0, 0, 0, 0, 0, '', false)",
        config=json.dumps(config),
    )
    upgrade(db_url)
    ((model_types, stored_config),) = _run(db_url, "SELECT model_types, config FROM channel")
    assert json.loads(str(model_types)) == {
        "m-a": "chat",
        "m-b": "audio_transcription",
        "m-c": "rerank",
    }
    assert json.loads(str(stored_config)) == {"test_model": "m-a"}

    command.downgrade(alembic_config(db_url), "0005")
    ((down_config,),) = _run(db_url, "SELECT config FROM channel")
    assert json.loads(str(down_config))["model_types"]["m-b"] == "audio_transcription"
    upgrade(db_url)
    ((again,),) = _run(db_url, "SELECT model_types FROM channel")
    assert json.loads(str(again))["m-b"] == "audio_transcription"
