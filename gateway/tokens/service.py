"""TokenService: every token write the admin API, the UI, the importer and startup make.

Each write is followed by exactly one `tokens_changed()` on the notifier: the authenticator
caches lookups by key digest (an unknown key too), so a write that no surface announces would
leave a deleted token working, or a new one refused, until the cache ages out.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.changes import ChangeNotifier
from gateway.db.crud import tokens as crud
from gateway.db.models import TokenCreate, TokenUpdate
from gateway.db.tables import Token, TokenStatus


class TokenService:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], notifier: ChangeNotifier
    ) -> None:
        self.sessions = sessions
        self.notifier = notifier

    def with_notifier(self, notifier: ChangeNotifier) -> TokenService:
        """The same service announcing elsewhere (startup writes silently)."""
        return TokenService(sessions=self.sessions, notifier=notifier)

    async def get(self, token_id: int) -> Token | None:
        async with self.sessions() as session:
            return await session.get(Token, token_id)

    async def create(self, data: TokenCreate, *, key: str | None = None) -> tuple[Token, str]:
        """The row and the full key (shown once, never stored); `key` keeps a given one."""
        async with self.sessions() as session:
            row, key = await crud.create_token(session, data=data, key=key)
        await self.notifier.tokens_changed([row.id or 0])
        return row, key

    async def update(self, data: TokenUpdate, *, status_only: bool = False) -> Token | None:
        async with self.sessions() as session:
            row = await crud.update_token(session, data=data, status_only=status_only)
        if row is not None:
            await self.notifier.tokens_changed([data.id])
        return row

    async def enable(self, token_id: int) -> Token | None:
        return await self.update(
            TokenUpdate(id=token_id, status=TokenStatus.ENABLED), status_only=True
        )

    async def disable(self, token_id: int) -> Token | None:
        return await self.update(
            TokenUpdate(id=token_id, status=TokenStatus.DISABLED), status_only=True
        )

    async def delete(self, token_id: int) -> bool:
        async with self.sessions() as session:
            deleted = await crud.delete_token(session, token_id=token_id)
        if deleted:
            await self.notifier.tokens_changed([token_id])
        return deleted

    async def import_tokens(
        self, items: Sequence[tuple[TokenCreate, str, dict[str, int | float]]]
    ) -> list[Token]:
        """Tokens from One API with their own keys and history (status, times, used quota), in
        one commit and one announcement."""
        rows = [crud.new_token(data=data, key=key, **history) for data, key, history in items]
        if not rows:
            return rows
        async with self.sessions() as session:
            session.add_all(rows)
            await session.commit()
        await self.notifier.tokens_changed([r.id or 0 for r in rows])
        return rows
