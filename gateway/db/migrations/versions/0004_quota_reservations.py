"""open quota reservations and the gateway process leases that hold them (issue 14: a crash
must not lose money state)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quotareservation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("quotareservation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quotareservation_holder"), ["holder"])
    op.create_table(
        "gatewaylease",
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("holder"),
    )


def downgrade() -> None:
    op.drop_table("gatewaylease")
    with op.batch_alter_table("quotareservation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quotareservation_holder"))
    op.drop_table("quotareservation")
