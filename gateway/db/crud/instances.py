"""ModelInstance CRUD: the launched UIDs and their LaunchSpec JSON, so a restart restores them."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db.tables import ModelInstance


async def save_instance(session: AsyncSession, *, uid: str, spec_json: str, node: str = "") -> None:
    """Insert or replace the row of `uid`."""
    row = await session.get(ModelInstance, uid)
    if row is None:
        session.add(ModelInstance(uid=uid, spec=spec_json, node=node))
    else:
        row.spec = spec_json
        row.node = node
        session.add(row)
    await session.commit()


async def delete_instance(session: AsyncSession, *, uid: str) -> bool:
    row = await session.get(ModelInstance, uid)
    if row is None:
        return False
    await session.delete(row)
    await session.commit()
    return True


async def list_instances(session: AsyncSession, *, node: str | None = None) -> list[ModelInstance]:
    """Rows in launch order (oldest first), optionally those of one node."""
    stmt = select(ModelInstance)
    if node is not None:
        stmt = stmt.where(col(ModelInstance.node) == node)
    stmt = stmt.order_by(col(ModelInstance.created_time), col(ModelInstance.uid))
    return list((await session.exec(stmt)).all())
