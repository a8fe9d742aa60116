"""channel.model_types: the admin's kind for each model a channel serves (issue 15)

A remote model's kind (chat, embedding, rerank, audio_transcription, audio_speech,
image_generation) decides which FastGPT list it is exported to, what `/v1/models/{id}` says it
is and which API a channel test calls. The kind is guessed from litellm's model table and name
rules; this column holds the admin's corrections, as a JSON object {model: kind}.

Channels that declared types in their config (`config.model_types`, the old words llm, audio,
image) get them moved here, in the new words.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 11:40:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# the old config words -> kinds (gateway.model_kinds.KIND_ALIASES, frozen here)
_OLD_WORDS = {
    "llm": "chat",
    "audio": "audio_transcription",
    "tts": "audio_speech",
    "image": "image_generation",
}


def _move_declared_types() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, config FROM channel")).fetchall()
    for channel_id, config_text in rows:
        try:
            config = json.loads(config_text or "{}")
        except ValueError:
            continue
        declared = config.pop("model_types", None) if isinstance(config, dict) else None
        if not isinstance(declared, dict):
            continue
        kinds = {str(m): _OLD_WORDS.get(k, k) for m, k in declared.items() if isinstance(k, str)}
        conn.execute(
            sa.text("UPDATE channel SET model_types = :t, config = :c WHERE id = :i"),
            {"t": json.dumps(kinds), "c": json.dumps(config), "i": channel_id},
        )


def upgrade() -> None:
    with op.batch_alter_table("channel", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("model_types", sa.Text(), nullable=False, server_default="{}")
        )
    _move_declared_types()


def _restore_declared_types() -> None:
    """Back into the config, so a downgrade keeps the admin's kinds (in the new words)."""
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, config, model_types FROM channel")).fetchall()
    for channel_id, config_text, types_text in rows:
        try:
            config, kinds = json.loads(config_text or "{}"), json.loads(types_text or "{}")
        except ValueError:
            continue
        if not kinds or not isinstance(config, dict):
            continue
        config["model_types"] = kinds
        conn.execute(
            sa.text("UPDATE channel SET config = :c WHERE id = :i"),
            {"c": json.dumps(config), "i": channel_id},
        )


def downgrade() -> None:
    _restore_declared_types()
    with op.batch_alter_table("channel", schema=None) as batch_op:
        batch_op.drop_column("model_types")
