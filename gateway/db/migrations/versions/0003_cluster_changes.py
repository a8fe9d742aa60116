"""cluster change events and node records in the database (no Redis needed for --workers N)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusterevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("origin", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("clusterevent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clusterevent_created_at"), ["created_at"])
    op.create_table(
        "clusternode",
        sa.Column("node_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("node_id"),
    )
    with op.batch_alter_table("clusternode", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clusternode_expires_at"), ["expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("clusternode", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clusternode_expires_at"))
    op.drop_table("clusternode")
    with op.batch_alter_table("clusterevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clusterevent_created_at"))
    op.drop_table("clusterevent")
