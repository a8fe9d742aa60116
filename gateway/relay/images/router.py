from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import CallerDep, RelayDep
from gateway.relay.common import json_call
from gateway.relay.images.protocol import ImageRequest
from gateway.relay.route import RelayRoute

router = APIRouter(route_class=RelayRoute)


@router.post("/images/generations", response_model=None, summary="Generate images")
async def generations(
    body: ImageRequest, request: Request, caller: CallerDep, relay: RelayDep
) -> Response:
    # Images are counted as one "completion token" each for pricing (price per image).
    call = await json_call(
        request,
        caller,
        surface="images",
        model=body.model,
        max_output_tokens=body.n,
        count_usage=lambda obj: (0, len(obj.get("data") or ())),
        content=lambda: body.prompt,
    )
    return await relay.run(call)
