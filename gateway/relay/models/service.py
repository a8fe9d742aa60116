"""What `/v1/models` lists: every model the caller may use, each described fully.

Every entry carries Xinference's describe fields (`model_type`, `model_name`, `model_ability`,
and for local UIDs `model_format`, `model_family`, `model_size_in_billions`, `quantization`), so
`xinference-client`'s `get_model`, Dify's Xinference credential check and New API's Xinference
channel work against channel models too: the client picks its handle from `model_type` and
`model_ability` and raises KeyError when they are missing.

The directory also says why a launched model has no endpoint (`not_ready`): a UID still loading
(first launch, restore after a restart, reload) or failed gets a 503 with Retry-After rather than
the 404 that makes FastGPT and SDK clients give up. The relay asks only after its route lookup
failed, so the hot path never pays for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.auth.tokens import Caller
from gateway.errors import ModelNotReady
from gateway.model_info import ModelKind, PendingModel, ServedModel
from gateway.model_kinds import channel_kind
from gateway.relay.service import RelayService
from gateway.upstreams import litellm_table

# Xinference's `model_type` per kind (xinference/model/*/core.py `to_dict`).
XINFERENCE_TYPES: dict[ModelKind, str] = {
    "chat": "LLM",
    "embedding": "embedding",
    "rerank": "rerank",
    "audio_transcription": "audio",
    "audio_speech": "audio",
    "image_generation": "image",
}
# Xinference's `model_ability` words for models that declare none of their own.
DEFAULT_ABILITIES: dict[ModelKind, list[str]] = {
    "chat": ["chat"],
    "embedding": ["text-embedding"],
    "rerank": ["rerank"],
    "audio_transcription": ["audio2text"],
    "audio_speech": ["text2audio"],
    "image_generation": ["text2image"],
}
# The runtime says "gguf"; Xinference's clients launch and list GGUF models as "ggufv2".
XINFERENCE_FORMATS = {"gguf": "ggufv2"}
LOADING_RETRY_AFTER_S = 5


class ModelDirectory:
    def __init__(
        self,
        relay: RelayService,
        local: Callable[[], dict[str, ServedModel]] | None = None,
        *,
        pending: Callable[[str], PendingModel | None] | None = None,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.relay = relay
        self.local = local or (lambda: {})
        # from the local runtime: a launched UID that is not serving, or None for an unknown one
        self.pending = pending or (lambda _model: None)
        # bring this process's view up to date (`--workers N`, replicas: a channel added or a
        # model published through another process a moment ago)
        self.refresh = refresh
        self.created = int(time.time())

    async def not_ready(self, model: str) -> ModelNotReady | None:
        """The 503 for a launched model that cannot serve now; None when nobody launched it.
        Asked after the route lookup failed, so this process's view is refreshed first (a
        channel added or a UID launched a moment ago through another process); concurrent
        refreshes share their reads, so a burst of unknown names costs a few reads, not one each."""
        if self.refresh is not None:
            await self.refresh()
        p = self.pending(model)
        if p is None:
            return None
        if p.status == "error":
            return ModelNotReady(
                f"model '{model}' failed and is not serving: {p.error or 'no reason recorded'}. "
                "An admin can read its logs in the admin UI, then terminate and launch it again",
                code="model_failed",
                param="model",
            )
        if p.status in ("unloading", "unloaded"):
            # only where this process cannot reload it (`--workers N`: another process runs it)
            what = (
                f"model '{model}' was unloaded after being idle; a request that reaches the "
                "process running the local models loads it again"
            )
        elif p.status == "loading":
            ago = f" (started {max(0, round(time.time() - p.since))} s ago)" if p.since else ""
            what = f"model '{model}' is loading{ago}"
        else:  # restarting, or ready a moment before its endpoints are published here
            what = f"model '{model}' is {'restarting' if p.status == 'restarting' else 'starting'}"
        return ModelNotReady(
            f"{what}; retry in a few seconds",
            param="model",
            headers={"Retry-After": str(LOADING_RETRY_AFTER_S)},
        )

    def served(self, caller: Caller) -> list[ServedModel]:
        local = self.local()
        out = []
        for mid in sorted(self.relay.allowed_models(caller)):
            out.append(local.get(mid) or self._channel_model(mid, caller.group))
        return out

    def _channel_model(self, model: str, group: str) -> ServedModel:
        """A channel model: its kind from the first channel (highest priority) that routes it."""
        tiers = self.relay.dispatcher.routes.tiers(group, model)
        endpoint = next((ep for tier in tiers for ep in tier), None)
        upstream = endpoint.upstream_model(model) if endpoint else model
        kind = channel_kind(model, upstream, endpoint.model_types if endpoint else {})
        entry = litellm_table.lookup(model) or litellm_table.lookup(upstream)
        return ServedModel(
            id=model,
            kind=kind,
            source="channel",
            context_length=entry.max_input_tokens if entry else None,
            max_output_tokens=entry.max_output_tokens if entry else None,
        )

    def entry(self, m: ServedModel) -> dict[str, Any]:
        """OpenAI's model object plus Xinference's description (restful_client `get_model`)."""
        item: dict[str, Any] = {
            "id": m.id,
            "object": "model",
            "created": self.created,
            "owned_by": m.owned_by,
            "model_type": XINFERENCE_TYPES[m.kind],
            "model_name": m.display_name or m.id,
            "model_ability": m.abilities or DEFAULT_ABILITIES[m.kind],
            "model_lang": m.languages,
            "context_length": m.context_length,
            "kind": m.kind,
            "source": m.source,
        }
        if m.kind == "embedding":
            item["dimensions"] = m.dimensions
            item["max_tokens"] = m.max_input_tokens
        if m.kind == "audio_speech":
            item["voices"] = m.voices
        if m.source == "local":
            item.update(
                {
                    "model_format": XINFERENCE_FORMATS.get(m.model_format or "", m.model_format),
                    "model_family": m.model_family or m.display_name or m.id,
                    "model_size_in_billions": m.model_size_in_billions,
                    "quantization": m.quantization,
                    "model_engine": m.engine,
                }
            )
        return item
