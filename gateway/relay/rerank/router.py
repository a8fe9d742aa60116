from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.billing.tokenizer import count_text
from gateway.deps import CallerDep, RelayDep
from gateway.relay.common import json_call
from gateway.relay.rerank.protocol import RerankRequest
from gateway.relay.rerank.service import xinference_shape
from gateway.relay.route import RelayRoute

router = APIRouter(route_class=RelayRoute)


def _estimate(body: RerankRequest) -> int:
    docs = sum(
        count_text(d if isinstance(d, str) else str(d.get("text", ""))) for d in body.documents
    )
    return docs + count_text(body.query) * len(body.documents)


@router.post("/rerank", response_model=None, summary="Rerank documents against a query")
async def rerank(
    body: RerankRequest, request: Request, caller: CallerDep, relay: RelayDep
) -> Response:
    call = await json_call(
        request,
        caller,
        surface="rerank",
        model=body.model,
        estimate_prompt=lambda: _estimate(body),
    )
    call.reshape = lambda obj: xinference_shape(obj, body)
    return await relay.run(call)
