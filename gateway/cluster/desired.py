"""Desired state of GPU nodes and node tokens, in the database every gateway replica shares.

What a node should run is a `ModelInstance` row with `node` set; the row key is `<uid>@<node>`,
so the same UID can be placed on several nodes (replicas of one model spread over machines). A
node reads its rows in every heartbeat answer and converges: launches what is missing, stops what
is gone. Nodes poll rather than being called, so a node needs no inbound port for commands (only
its worker ports), and any replica can answer it.

Node tokens are admin-issued secrets; only their SHA-256 is stored (an `Option` row
`node_token:<digest>` whose value is the token's name: the one node id it may heartbeat as).
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.keys import hash_key, same_digest
from gateway.db.crud import instances as crud
from gateway.db.tables import ModelInstance, Option

TOKEN_PREFIX = "node_token:"  # noqa: S105 - an Option key prefix, not a secret


def row_key(uid: str, node: str) -> str:
    return f"{uid}@{node}"


async def place(session: AsyncSession, *, node: str, uid: str, spec_json: str) -> None:
    await crud.save_instance(session, uid=row_key(uid, node), spec_json=spec_json, node=node)


async def unplace(session: AsyncSession, *, node: str, uid: str) -> bool:
    return await crud.delete_instance(session, uid=row_key(uid, node))


async def for_node(session: AsyncSession, node: str) -> list[str]:
    """LaunchSpec JSON of everything `node` should run, oldest first."""
    return [row.spec for row in await crud.list_instances(session, node=node)]


async def all_placed(session: AsyncSession) -> list[dict[str, Any]]:
    stmt = select(ModelInstance).where(col(ModelInstance.node) != "")
    rows = (await session.exec(stmt.order_by(col(ModelInstance.created_time)))).all()
    return [
        {"uid": r.uid.rsplit("@", 1)[0], "node": r.node, "created_time": r.created_time}
        for r in rows
    ]


async def issue_token(session: AsyncSession, *, name: str) -> str:
    token = "nt-" + secrets.token_urlsafe(32)
    session.add(Option(key=TOKEN_PREFIX + hash_key(token), value=name))
    await session.commit()
    return token


async def revoke_tokens(session: AsyncSession, *, name: str) -> int:
    rows = (
        await session.exec(
            select(Option).where(
                col(Option.key).startswith(TOKEN_PREFIX), col(Option.value) == name
            )
        )
    ).all()
    for row in rows:
        await session.delete(row)
    await session.commit()
    return len(rows)


async def token_node(
    session: AsyncSession, token: str, configured: str | None
) -> tuple[bool, str | None]:
    """(valid, the node id the token is bound to). The configured MODELPORT_NODE_TOKEN (compared
    in constant time) may serve any node id; an issued token only the node named at issue."""
    digest = hash_key(token)
    if configured and same_digest(digest, hash_key(configured)):
        return True, None
    row = await session.get(Option, TOKEN_PREFIX + digest)
    return (True, row.value) if row is not None else (False, None)
