"""Channel CRUD. Keys are encrypted here and nowhere else."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import delete, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.secrets import SecretBox
from gateway.db.models import ChannelCreate, ChannelPublic, ChannelUpdate
from gateway.db.tables import Channel, ChannelStatus
from gateway.upstreams.registry import normalise_base_url

LOCAL_CHANNEL_NAME = "local"
LOCAL_CHANNEL_TYPE = 0


def to_public(ch: Channel) -> ChannelPublic:
    data = ch.model_dump(exclude={"key_enc", "builtin"})
    return ChannelPublic(**data, has_key=bool(ch.key_enc))


async def create_channels(
    session: AsyncSession, *, data: ChannelCreate, box: SecretBox
) -> list[Channel]:
    """One channel per key line (One API's batch add), or one channel with no key."""
    keys = [k.strip() for k in data.key.splitlines() if k.strip()] or [""]
    rows = []
    for i, key in enumerate(keys):
        name = data.name if len(keys) == 1 else f"{data.name}-{i + 1}"
        rows.append(
            Channel(
                type=data.type,
                name=name,
                key_enc=box.encrypt(key),
                base_url=normalise_base_url(data.type, data.base_url or ""),
                models=",".join(data.models),
                model_mapping=orjson.dumps(data.model_mapping or {}).decode(),
                model_types=orjson.dumps(data.model_types or {}).decode(),
                group=data.group or "default",
                priority=data.priority or 0,
                weight=1 if data.weight is None else data.weight,
                status=data.status or 1,
                config=orjson.dumps(data.config or {}).decode(),
                other=data.other or "",
                system_prompt=data.system_prompt or "",
            )
        )
    session.add_all(rows)
    await session.commit()
    for row in rows:
        await session.refresh(row)
    return rows


async def update_channel(
    session: AsyncSession, *, data: ChannelUpdate, box: SecretBox
) -> Channel | None:
    ch = await session.get(Channel, data.id)
    if ch is None:
        return None
    fields = data.model_dump(exclude_unset=True, exclude={"id", "key"})
    for name, value in fields.items():
        if value is None:
            continue
        if name == "models":
            value = ",".join(value)
        elif name in ("model_mapping", "model_types", "config"):
            value = orjson.dumps(value).decode()
        setattr(ch, name, value)
    if data.key:
        ch.key_enc = box.encrypt(data.key.strip())
    if "base_url" in fields or "type" in fields:
        ch.base_url = normalise_base_url(ch.type, ch.base_url)
    session.add(ch)
    await session.commit()
    await session.refresh(ch)
    return ch


async def set_channel_fields(session: AsyncSession, *, channel_id: int, **values: Any) -> None:
    ch = await session.get(Channel, channel_id)
    if ch is None:
        return
    for name, value in values.items():
        setattr(ch, name, value)
    session.add(ch)
    await session.commit()


async def delete_channel(session: AsyncSession, *, channel_id: int) -> bool:
    ch = await session.get(Channel, channel_id)
    if ch is None or ch.builtin:
        return False
    await session.delete(ch)
    await session.commit()
    return True


async def delete_disabled_channels(session: AsyncSession) -> int:
    """One API's DeleteDisabledChannel (model/channel.go): manually or automatically disabled."""
    stmt = (
        delete(Channel)
        .where(
            col(Channel.status).in_([ChannelStatus.MANUALLY_DISABLED, ChannelStatus.AUTO_DISABLED])
        )
        .where(col(Channel.builtin).is_(False))
    )
    result = await session.exec(stmt)
    await session.commit()
    return int(result.rowcount or 0)


async def list_channels(
    session: AsyncSession, *, page: int = 0, page_size: int = 50, keyword: str = ""
) -> tuple[list[Channel], int]:
    stmt = select(Channel)
    count = select(func.count()).select_from(Channel)
    if keyword:
        like = f"%{keyword}%"
        cond = or_(col(Channel.name).like(like), col(Channel.models).like(like))
        if keyword.isdigit():
            cond = or_(cond, col(Channel.id) == int(keyword))
        stmt, count = stmt.where(cond), count.where(cond)
    stmt = stmt.order_by(col(Channel.id)).offset(page * page_size).limit(page_size)
    rows = (await session.exec(stmt)).all()
    total = (await session.exec(count)).one()
    return list(rows), int(total)


async def all_channels(session: AsyncSession) -> list[Channel]:
    return list((await session.exec(select(Channel))).all())


async def ensure_local_channel(session: AsyncSession) -> Channel:
    """The built-in channel whose abilities are the UIDs of running local workers.

    Replicas starting together may both create it; every caller then keeps the oldest row and
    deletes the others, so they converge on one whichever order they run in.
    """
    stmt = select(Channel).where(col(Channel.builtin).is_(True)).order_by(col(Channel.id))
    rows = list((await session.exec(stmt)).all())
    if not rows:
        session.add(Channel(name=LOCAL_CHANNEL_NAME, type=LOCAL_CHANNEL_TYPE, builtin=True))
        await session.commit()
        rows = list((await session.exec(stmt)).all())
    for extra in rows[1:]:
        await session.delete(extra)
    if len(rows) > 1:
        await session.commit()
    return rows[0]
