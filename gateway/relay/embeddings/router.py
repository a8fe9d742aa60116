from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.billing.tokenizer import count_input
from gateway.deps import CallerDep, RelayDep
from gateway.errors import InvalidRequest
from gateway.relay.common import json_call
from gateway.relay.embeddings.protocol import EmbeddingRequest
from gateway.relay.route import RelayRoute

router = APIRouter(route_class=RelayRoute)


@router.post("/embeddings", response_model=None, summary="Create embeddings")
async def embeddings(
    body: EmbeddingRequest, request: Request, caller: CallerDep, relay: RelayDep
) -> Response:
    if isinstance(body.input, list) and not body.input:
        raise InvalidRequest(
            "input must not be empty: send a string or a list of strings", param="input"
        )
    call = await json_call(
        request,
        caller,
        surface="embeddings",
        model=body.model,
        estimate_prompt=lambda: count_input(body.input),
    )
    return await relay.run(call)
