"""A fake FastGPT (>= 4.8.20) admin surface: a real HTTP server for the push tests.

It implements what `gateway.export.fastgpt_push` talks to, with FastGPT's behaviour:
- `GET /api/support/user/account/preLogin?username=` -> a one-time code;
- `POST /api/support/user/account/loginByPassword {username, password: sha256hex, code}` ->
  sets the `fastgpt_token` cookie (the code must be the last one issued, and is used up);
- `GET /api/core/ai/model/list` -> the models, as FastGPT lists them (root only);
- `POST /api/core/ai/model/update {model, metadata}` -> upserts one model, merging metadata
  into what is stored (root only);
- `POST /api/core/ai/model/updateWithJson {config}` -> replaces every model. The code under
  test must never call it: every call is recorded, so a test can assert there were none.
Answers use FastGPT's `{code, statusText, message, data}` envelope; errors are HTTP 500 with the
message in `message`, as FastGPT's jsonRes does.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.provider_server import ServedApp

ROOT = "root"
TOKEN_COOKIE = "fastgpt_token"
# A built-in model FastGPT ships with; a push must leave it alone.
BUILTIN_MODEL = {
    "model": "gpt-4o-mini",
    "metadata": {
        "type": "llm",
        "provider": "OpenAI",
        "model": "gpt-4o-mini",
        "name": "GPT-4o-mini",
    },
}


@dataclass(slots=True)
class Call:
    method: str
    path: str
    body: Any
    authed: bool


@dataclass(slots=True)
class FakeFastGPTState:
    root_password: str
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> metadata
    calls: list[Call] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)  # model -> error message for update
    codes: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls_to(self, path_end: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path.endswith(path_end)]


def _ok(data: Any = None) -> JSONResponse:
    return JSONResponse({"code": 200, "statusText": "", "message": "", "data": data})


def _err(message: str, status: int = 500) -> JSONResponse:
    return JSONResponse(
        {"code": status, "statusText": "", "message": message, "data": None}, status_code=status
    )


def create_app(state: FakeFastGPTState) -> FastAPI:
    app = FastAPI()

    async def record(request: Request) -> tuple[Any, bool]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        authed = request.cookies.get(TOKEN_COOKIE) in state.tokens
        with state.lock:
            state.calls.append(Call(request.method, request.url.path, body, authed))
        return body, authed

    @app.get("/api/support/user/account/preLogin")
    async def pre_login(request: Request, username: str) -> JSONResponse:
        await record(request)
        code = secrets.token_hex(3)
        with state.lock:
            state.codes[username] = code
        return _ok({"code": code})

    @app.post("/api/support/user/account/loginByPassword")
    async def login(request: Request) -> JSONResponse:
        body, _ = await record(request)
        body = body or {}
        with state.lock:
            code = state.codes.pop(body.get("username", ""), None)
        expected = hashlib.sha256(state.root_password.encode()).hexdigest()
        if body.get("username") != ROOT or body.get("password") != expected:
            return _err("user or password error")
        if code is None or body.get("code") != code:
            return _err("code error")
        token = secrets.token_hex(16)
        with state.lock:
            state.tokens.add(token)
        resp = _ok({"user": {"username": ROOT}, "token": token})
        resp.set_cookie(TOKEN_COOKIE, token, httponly=True)
        return resp

    @app.get("/api/core/ai/model/list")
    async def model_list(request: Request) -> JSONResponse:
        _, authed = await record(request)
        if not authed:
            return _err("unAuthorization", 403)
        with state.lock:
            listed = [
                {
                    "type": m.get("type"),
                    "provider": m.get("provider"),
                    "model": model,
                    "name": m.get("name"),
                    "isActive": m.get("isActive", False),
                    "isCustom": m.get("isCustom", False),
                }
                for model, m in state.models.items()
            ]
        return _ok(listed)

    @app.post("/api/core/ai/model/update")
    async def update(request: Request) -> JSONResponse:
        body, authed = await record(request)
        if not authed:
            return _err("unAuthorization", 403)
        model = ((body or {}).get("model") or "").strip()
        if not model:
            return _err("model is required")
        with state.lock:
            if model in state.reject:
                return _err(state.reject[model])
            merged = {**state.models.get(model, {}), **((body or {}).get("metadata") or {})}
            merged["model"] = model
            state.models[model] = merged
        return _ok({})

    @app.post("/api/core/ai/model/updateWithJson")
    async def update_with_json(request: Request) -> JSONResponse:
        body, authed = await record(request)
        if not authed:
            return _err("unAuthorization", 403)
        items = json.loads((body or {}).get("config") or "[]")
        with state.lock:
            state.models = {i["model"]: i["metadata"] for i in items}
        return _ok({})

    return app


class FakeFastGPT:
    """Serves the fake on 127.0.0.1 at a free port until `stop()`."""

    def __init__(self, root_password: str = "1234") -> None:
        self.state = FakeFastGPTState(root_password=root_password)
        self.state.models[BUILTIN_MODEL["model"]] = dict(BUILTIN_MODEL["metadata"])
        self._served = ServedApp(create_app(self.state))
        self.url = self._served.url

    def stop(self) -> None:
        self._served.stop()
