"""Token CRUD and the atomic quota operations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.keys import display_prefix, generate_key, hash_key
from gateway.db.models import TokenCreate, TokenPublic, TokenUpdate
from gateway.db.tables import Token


def to_public(token: Token) -> TokenPublic:
    data = token.model_dump(exclude={"key_hash", "key_prefix"})
    return TokenPublic(**data, key=token.key_prefix)


async def create_token(
    session: AsyncSession, *, data: TokenCreate, key: str | None = None
) -> tuple[Token, str]:
    """Create a token; returns the row and the full key (shown once, never stored)."""
    key = key or generate_key()
    row = new_token(data=data, key=key)
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return row, key


def new_token(*, data: TokenCreate, key: str, **history: Any) -> Token:
    """The row for `key` (stored as its hash); `history` sets fields a migrated token brings
    along (status, created_time, accessed_time, used_quota)."""
    return Token(
        name=data.name,
        key_hash=hash_key(key),
        key_prefix=display_prefix(key),
        expired_time=data.expired_time,
        remain_quota=data.remain_quota,
        unlimited_quota=data.unlimited_quota,
        models=",".join(data.models or []),
        subnet=data.subnet or "",
        group=data.group or "default",
        rpm=data.rpm or 0,
        tpm=data.tpm or 0,
        max_concurrency=data.max_concurrency or 0,
        log_content=bool(data.log_content),
        **history,
    )


async def known_hashes(session: AsyncSession, hashes: list[str]) -> set[str]:
    """Which of these key digests already belong to a token."""
    stmt = select(Token.key_hash).where(col(Token.key_hash).in_(hashes))
    return set((await session.exec(stmt)).all())


async def get_by_hash(session: AsyncSession, key_hash: str) -> Token | None:
    return (await session.exec(select(Token).where(Token.key_hash == key_hash))).first()


async def update_token(
    session: AsyncSession, *, data: TokenUpdate, status_only: bool = False
) -> Token | None:
    row = await session.get(Token, data.id)
    if row is None:
        return None
    fields = data.model_dump(exclude_unset=True, exclude={"id"})
    if status_only:
        fields = {"status": fields.get("status")}
    for name, value in fields.items():
        if value is None:
            continue
        if name == "models":
            value = ",".join(value)
        setattr(row, name, value)
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return row


async def delete_token(session: AsyncSession, *, token_id: int) -> bool:
    row = await session.get(Token, token_id)
    if row is None:
        return False
    await session.delete(row)
    await session.commit()
    return True


async def list_tokens(
    session: AsyncSession, *, page: int = 0, page_size: int = 50, keyword: str = ""
) -> tuple[list[Token], int]:
    stmt = select(Token)
    count = select(func.count()).select_from(Token)
    if keyword:
        cond = or_(col(Token.name).like(f"%{keyword}%"), col(Token.key_prefix).like(f"{keyword}%"))
        stmt, count = stmt.where(cond), count.where(cond)
    stmt = stmt.order_by(col(Token.id).desc()).offset(page * page_size).limit(page_size)
    return list((await session.exec(stmt)).all()), int((await session.exec(count)).one())
