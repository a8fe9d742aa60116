"""channel type numbers follow One API: stored Xinference channels move from 47 (One API's Baidu V2,
New API's Xinference) to modelport's own 1047, so 47 can mean what it means in One API; channels
keep One API's `other` field (Azure API version, Xunfei version, Ali plugin) (issue 15)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 11:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channel") as batch:
        batch.add_column(sa.Column("other", sa.Text(), nullable=False, server_default=""))
    op.execute("UPDATE channel SET type = 1047 WHERE type = 47")


def downgrade() -> None:
    op.execute("UPDATE channel SET type = 47 WHERE type = 1047")
    with op.batch_alter_table("channel") as batch:
        batch.drop_column("other")
