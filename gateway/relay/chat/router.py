from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.billing.tokenizer import count_messages, text_of
from gateway.deps import CallerDep, RelayDep
from gateway.relay.chat.media import inline_media_urls
from gateway.relay.chat.protocol import ChatCompletionRequest
from gateway.relay.chat.shape import with_required_fields
from gateway.relay.common import json_call
from gateway.relay.route import RelayRoute
from gateway.relay.service import RelayCall
from gateway.services import services_of

router = APIRouter(route_class=RelayRoute)


@router.post("/chat/completions", response_model=None, summary="Create a chat completion")
async def chat_completions(
    body: ChatCompletionRequest, request: Request, caller: CallerDep, relay: RelayDep
) -> Response:
    call = await json_call(
        request,
        caller,
        surface="chat",
        model=body.model,
        stream=body.stream,
        estimate_prompt=lambda: count_messages(body.messages),
        max_output_tokens=body.output_bound(
            services_of(request).settings.default_max_tokens_estimate
        ),
        content=lambda: "\n".join(text_of(m.content) for m in body.messages),
    )
    call.prepare = lambda: _inline_media(call, request)
    if not body.stream:
        call.reshape = with_required_fields
    return await relay.run(call)


async def _inline_media(call: RelayCall, request: Request) -> None:
    assert call.request.body is not None
    if await inline_media_urls(call.request.body, services_of(request).fetch):
        call.request.raw = None  # the rewritten body is what goes upstream
