"""Attack: a paying user disables a shared channel for everyone.

Any upstream 4xx whose body contained "billing", "permission denied", "arrears", ... auto-disabled
the channel; OpenAI-style upstreams quote invalid input back ("Invalid value: 'billing'"), so a
user picked the words. Auto-disable now rests only on what the channel's credentials cause
(401/402/403, structured codes such as insufficient_quota), never on message text and never on a
400 invalid_request_error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from tests.support.servers import ServerThread

MSG = [{"role": "user", "content": "hi"}]
WORDS = (
    "billing",
    "permission denied",
    "arrears",
    "insufficient balance",
    "invalid api key",
    "your credit balance is too low",
    "you exceeded your current quota",
)


@pytest.fixture
def echo() -> Iterator[ServerThread]:
    """An OpenAI-style upstream that quotes the caller's `user` field back in its error, with the
    status the caller asks for in `x_status` (forwarded like any unknown OpenAI field)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        if "user" not in body:
            return JSONResponse(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "ok"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
        status = int(body.get("x_status", 400))
        error = {
            "message": f"Invalid value for 'user': {body['user']!r}",
            "type": "invalid_request_error" if status == 400 else "rate_limit_error",
            "param": "user",
            "code": None,
        }
        return JSONResponse({"error": error}, status_code=status)

    server = ServerThread(app).start()
    yield server
    server.stop()


def test_words_a_caller_chooses_never_disable_a_shared_channel(gateway, echo):
    gateway.add_channel(name="shared", base_url=f"{echo.url}/v1", key="k", models="m")
    cid = gateway.api("GET", "/api/channel/")[-1]["id"]
    attacker = gateway.openai(gateway.create_token(name="attacker"))
    for words in WORDS:
        for status in (400, 404, 422, 429):
            with pytest.raises(openai.APIStatusError) as err:
                attacker.chat.completions.create(
                    model="m", messages=MSG, user=words, extra_body={"x_status": status}
                )
            assert err.value.status_code == status and words in str(err.value.message)
    asyncio.run_coroutine_threadsafe(
        gateway.app.state.services.monitor.close(), gateway.server.server_loop
    ).result(30)  # any auto-disable write would have landed
    assert gateway.api("GET", f"/api/channel/{cid}")["status"] == 1
    assert "m" in gateway.app.state.services.routes.models("default")
    victim = gateway.openai(gateway.create_token(name="victim"))
    assert (
        victim.chat.completions.create(model="m", messages=MSG).choices[0].message.content == "ok"
    )
