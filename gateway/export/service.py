"""What the FastGPT export needs from the running gateway: every served model, with stored
per-model overrides, and the key FastGPT should use."""

from __future__ import annotations

from typing import Any

import orjson
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.tokens import ADMIN_CALLER
from gateway.billing.prices import PriceBook
from gateway.db.tables import ModelOverride
from gateway.model_info import ServedModel
from gateway.relay.models.service import ModelDirectory

KEY_PLACEHOLDER = "sk-REPLACE-WITH-A-MODELPORT-TOKEN"


def served_models(directory: ModelDirectory, prices: PriceBook | None = None) -> list[ServedModel]:
    """Every served model; with `prices`, each carries what the gateway charges for it (USD per
    1M tokens), so the export's FastGPT prices match the quota a FastGPT user spends."""
    models = directory.served(ADMIN_CALLER)
    if prices is None:
        return models
    out = []
    for m in models:
        price = prices.get(m.id)
        out.append(m.model_copy(update={"input_price": price.input, "output_price": price.output}))
    return out


async def load_overrides(session: AsyncSession) -> dict[str, dict[str, Any]]:
    rows = (await session.exec(select(ModelOverride))).all()
    return {r.model: orjson.loads(r.data) for r in rows}


async def save_override(session: AsyncSession, *, model: str, data: dict[str, Any]) -> None:
    row = await session.get(ModelOverride, model)
    if not data:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(ModelOverride(model=model, data=orjson.dumps(data).decode()))
    else:
        row.data = orjson.dumps(data).decode()
        session.add(row)
    await session.commit()
