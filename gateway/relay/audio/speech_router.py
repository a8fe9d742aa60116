"""POST /v1/audio/speech: text in, audio bytes out, streamed through as the upstream sends them.

The audio is never buffered or re-encoded here: the upstream's bytes and its Content-Type go to
the client chunk by chunk (`UpstreamRequest.raw_stream`), so a long text starts playing after the
first sentence is synthesized. Usage counts the input's characters as prompt units, as One API
bills speech (songquanpeng/one-api `relay/controller/audio.go`: quota = len(input) x ratio).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import CallerDep, RelayDep
from gateway.relay.audio.speech_protocol import SpeechRequest
from gateway.relay.common import json_call
from gateway.relay.route import RelayRoute

router = APIRouter(route_class=RelayRoute)


@router.post("/audio/speech", response_model=None, summary="Text to speech")
async def speech(
    body: SpeechRequest, request: Request, caller: CallerDep, relay: RelayDep
) -> Response:
    call = await json_call(
        request,
        caller,
        surface="speech",
        model=body.model,
        stream=True,
        estimate_prompt=lambda: len(body.input),
        content=lambda: body.input,
    )
    call.request.raw_stream = True
    return await relay.run(call)
