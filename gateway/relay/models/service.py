"""What `/v1/models` lists: every model the caller may use, local ones with their metadata.

Local UIDs carry Xinference's describe fields (model_type, model_ability, context_length, ...), so
Xinference clients listing models through modelport see what they expect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.auth.tokens import Caller
from gateway.model_info import ServedModel
from gateway.relay.service import RelayService

XINFERENCE_TYPES = {
    "llm": "LLM",
    "embedding": "embedding",
    "rerank": "rerank",
    "audio": "audio",
    "image": "image",
    "tts": "audio",
}


class ModelDirectory:
    def __init__(
        self, relay: RelayService, local: Callable[[], dict[str, ServedModel]] | None = None
    ) -> None:
        self.relay = relay
        self.local = local or (lambda: {})
        self.created = int(time.time())

    def served(self, caller: Caller) -> list[ServedModel]:
        local = self.local()
        out = []
        for mid in sorted(self.relay.allowed_models(caller)):
            out.append(local.get(mid) or ServedModel(id=mid, source="channel"))
        return out

    def entry(self, m: ServedModel) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": m.id,
            "object": "model",
            "created": self.created,
            "owned_by": m.owned_by,
        }
        if m.source == "local":
            item.update(
                {
                    "model_type": XINFERENCE_TYPES.get(m.type, m.type),
                    "model_name": m.display_name or m.id,
                    "model_ability": m.abilities,
                    "context_length": m.context_length,
                    "dimensions": m.dimensions,
                    "max_tokens": m.max_input_tokens,
                }
            )
        return item
