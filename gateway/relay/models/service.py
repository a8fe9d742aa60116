"""What `/v1/models` lists: every model the caller may use, local ones with their metadata.

Local UIDs carry Xinference's describe fields (model_type, model_ability, context_length, ...), so
Xinference clients listing models through modelport see what they expect.

The directory also says why a launched model has no endpoint (`not_ready`): a UID still loading
(first launch, restore after a restart, reload) or failed gets a 503 with Retry-After rather than
the 404 that makes FastGPT and SDK clients give up. The relay asks only after its route lookup
failed, so the hot path never pays for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.auth.tokens import Caller
from gateway.errors import ModelNotReady
from gateway.model_info import PendingModel, ServedModel
from gateway.relay.service import RelayService

XINFERENCE_TYPES = {
    "llm": "LLM",
    "embedding": "embedding",
    "rerank": "rerank",
    "audio": "audio",
    "image": "image",
    "tts": "audio",
}
LOADING_RETRY_AFTER_S = 5


class ModelDirectory:
    def __init__(
        self, relay: RelayService, local: Callable[[], dict[str, ServedModel]] | None = None
    ) -> None:
        self.relay = relay
        self.local = local or (lambda: {})
        # set by the local runtime: a launched UID that is not serving, or None for an unknown one
        self.pending: Callable[[str], PendingModel | None] = lambda _model: None
        self.created = int(time.time())

    def not_ready(self, model: str) -> ModelNotReady | None:
        """The 503 for a launched model that cannot serve now; None when nobody launched it."""
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
