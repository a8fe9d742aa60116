"""Secret key rotation for channel keys.

Procedure (also in config/modelport.yaml): set `secret_key` to the new key, list the previous
one in `old_secret_keys`, restart, call `POST /api/secret/rotate` (admin) -- every stored channel
key is re-encrypted with the new key -- then drop the old key from `old_secret_keys`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlmodel import select

from gateway.admin_api.envelope import fail, ok
from gateway.auth.secrets import SecretBox
from gateway.db.tables import Channel
from gateway.services import services_of

router = APIRouter()


async def rotate_channel_keys(sessions: Any, box: SecretBox) -> int:
    """Re-encrypt every channel key with the current key; returns how many were rewritten.
    Raises ValueError (nothing written) when a key cannot be decrypted with any known key."""
    async with sessions() as session:
        rows = (await session.exec(select(Channel))).all()
        changed = 0
        for ch in rows:
            if not ch.key_enc:
                continue
            box.decrypt(ch.key_enc)  # refuses before anything is written
            ch.key_enc = box.rotate(ch.key_enc)
            session.add(ch)
            changed += 1
        await session.commit()
    return changed


@router.post("/secret/rotate", summary="Re-encrypt channel keys with the current secret key")
async def rotate(request: Request) -> dict[str, Any]:
    state = services_of(request)
    try:
        n = await rotate_channel_keys(state.sessions, state.box)
    except ValueError as exc:
        return fail(str(exc))
    return ok({"rotated": n})
