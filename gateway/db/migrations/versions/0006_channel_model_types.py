"""channel.model_types: the admin's kind for each model a channel serves (issue 15)

A remote model's kind (chat, embedding, rerank, audio_transcription, audio_speech,
image_generation) decides which FastGPT list it is exported to and what `/v1/models/{id}` says it
is. The kind is guessed from litellm's model table and name rules; this column holds the admin's
corrections, as a JSON object {model: kind}.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channel", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("model_types", sa.Text(), nullable=False, server_default="{}")
        )


def downgrade() -> None:
    with op.batch_alter_table("channel", schema=None) as batch_op:
        batch_op.drop_column("model_types")
