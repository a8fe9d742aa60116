"""Turns channel rows into route-table entries (decrypting keys once, here, off the hot path)."""

from __future__ import annotations

import orjson
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.auth.secrets import SecretBox
from gateway.db.crud.channels import all_channels
from gateway.db.models import split_csv
from gateway.db.tables import Channel, ChannelStatus
from gateway.settings import Settings
from gateway.upstreams.base import Endpoint, Timeouts
from gateway.upstreams.registry import channel_type

# One API's middleware/distributor.go: a channel's `other` is the API version of these types
# (Azure, Gemini) unless its config names one.
OTHER_IS_API_VERSION = frozenset({3, 24})


def timeouts_for(settings: Settings, config: dict[str, object]) -> Timeouts:
    def pick(name: str, default: float) -> float:
        value = config.get(name)
        return float(value) if isinstance(value, int | float) else default

    return Timeouts(
        connect=pick("connect_timeout_s", settings.connect_timeout_s),
        first_byte=pick("first_byte_timeout_s", settings.first_byte_timeout_s),
        stream_idle=pick("stream_idle_timeout_s", settings.stream_idle_timeout_s),
        total=pick("request_timeout_s", settings.request_timeout_s),
    )


def endpoint_for(ch: Channel, box: SecretBox, settings: Settings) -> Endpoint:
    ct = channel_type(ch.type)
    config = orjson.loads(ch.config or "{}")
    config.setdefault("stream_usage", ct.stream_usage)
    if ch.other and ch.type in OTHER_IS_API_VERSION and not config.get("api_version"):
        config["api_version"] = ch.other
    if ct.provider:
        config.setdefault("provider", ct.provider)
    return Endpoint(
        channel_id=ch.id or 0,
        channel_name=ch.name,
        kind=ct.kind,
        base_url=ch.base_url,
        api_key=box.decrypt(ch.key_enc) or None,
        priority=ch.priority,
        weight=ch.weight,
        model_mapping=orjson.loads(ch.model_mapping or "{}"),
        model_types=orjson.loads(ch.model_types or "{}"),
        config=config,
        timeouts=timeouts_for(settings, config),
    )


async def remote_entries(
    sessions: async_sessionmaker[AsyncSession], box: SecretBox, settings: Settings
) -> list[tuple[set[str], list[str], Endpoint]]:
    async with sessions() as session:
        channels = await all_channels(session)
    entries = []
    for ch in channels:
        if ch.builtin or ch.status != ChannelStatus.ENABLED:
            continue
        models = split_csv(ch.models)
        mapping = orjson.loads(ch.model_mapping or "{}")
        # A mapped name is also served: clients may ask for the mapping's keys.
        models += [m for m in mapping if m not in models]
        entries.append(
            (set(split_csv(ch.group) or ["default"]), models, endpoint_for(ch, box, settings))
        )
    return entries
