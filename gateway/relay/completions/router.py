from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.billing.tokenizer import count_input
from gateway.deps import CallerDep, RelayDep
from gateway.relay.common import json_call
from gateway.relay.completions.protocol import CompletionRequest
from gateway.relay.route import RelayRoute
from gateway.services import services_of

router = APIRouter(route_class=RelayRoute)


@router.post("/completions", response_model=None, summary="Create a text completion")
async def completions(
    body: CompletionRequest, request: Request, caller: CallerDep, relay: RelayDep
) -> Response:
    default = services_of(request).settings.default_max_tokens_estimate
    call = await json_call(
        request,
        caller,
        surface="completions",
        model=body.model,
        stream=body.stream,
        estimate_prompt=lambda: count_input(body.prompt),
        max_output_tokens=body.output_bound(default),
        content=lambda: body.prompt if isinstance(body.prompt, str) else "",
    )
    return await relay.run(call)
