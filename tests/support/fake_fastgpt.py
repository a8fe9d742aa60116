"""A fake FastGPT (>= 4.8.20) admin surface: a real HTTP server for the push tests.

It implements what `gateway.export.fastgpt_push` talks to, with FastGPT's behaviour:
- `GET /api/support/user/account/preLogin?username=` -> a one-time code;
- `POST /api/support/user/account/loginByPassword {username, password: sha256hex, code}` ->
  sets the `fastgpt_token` cookie (the code must be the last one issued, and is used up);
- `GET /api/core/ai/model/list` -> the models, as FastGPT lists them (root only);
- `POST /api/core/ai/model/update {model, metadata}` -> upserts one model's stored document with
  FastGPT's merge (root only);
- `POST /api/core/ai/model/updateWithJson {config}` -> replaces every stored document. The code
  under test must never call it: every call is recorded, so a test can assert there were none.
Answers use FastGPT's `{code, statusText, message, data}` envelope; errors are HTTP 500 with the
message in `message`, as FastGPT's jsonRes does.

Models are kept as FastGPT keeps them (labring/FastGPT, v4.8.20 .. v4.9):
- `system`: the built-in models of its provider files (`packages/service/core/ai/config/
  provider/*.json`; by default the 24 of v4.8.23 in tests/data/fastgpt-system-models-v4.8.23.json);
- `db`: the `system_models` collection, `model -> metadata`;
- `models`: what `loadSystemModels` (packages/service/core/ai/config/utils.ts, l.95-101 of the
  4.8.2x file that reads `./provider/*.json`; the type rule is the same up to 4.14) makes of both:
  a built-in is `{...fileModel, ...dbModel.metadata, provider, type: dbModel.metadata.type ||
  fileModel.type, isCustom: false}` (so a stored type overrides the built-in's), any other stored
  document is `{...metadata, isCustom: true}`;
- `model/update` (projects/app/src/pages/api/core/ai/model/update.ts, l.27-46 of the v4.9 file)
  stores `{...findModelFromAlldata(model), ...dbModel.metadata, ...metadata}` without `avatar`
  and `isCustom`, with `model` forced, `name` trimmed and null values dropped.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.provider_server import ServedApp

ROOT = "root"
TOKEN_COOKIE = "fastgpt_token"
SYSTEM_MODELS_FILE = (
    Path(__file__).resolve().parent.parent / "data" / "fastgpt-system-models-v4.8.23.json"
)
# A built-in model FastGPT ships with (in SYSTEM_MODELS_FILE); a push must leave its type alone.
BUILTIN_MODEL = {"model": "gpt-4o-mini", "metadata": {"type": "llm", "provider": "OpenAI"}}


def load_system_models(path: Path = SYSTEM_MODELS_FILE) -> dict[str, dict[str, Any]]:
    """model -> built-in model, each with its provider file's `provider` (as FastGPT loads them)."""
    providers = json.loads(path.read_text(encoding="utf-8"))
    return {m["model"]: {**m, "provider": p["provider"]} for p in providers for m in p["list"]}


@dataclass(slots=True)
class Call:
    method: str
    path: str
    body: Any
    authed: bool


@dataclass(slots=True)
class FakeFastGPTState:
    root_password: str
    system: dict[str, dict[str, Any]] = field(default_factory=dict)  # built-ins, by model
    db: dict[str, dict[str, Any]] = field(default_factory=dict)  # system_models: model -> metadata
    calls: list[Call] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)  # model -> error message for update
    codes: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls_to(self, path_end: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path.endswith(path_end)]

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        """Every model as FastGPT's loadSystemModels builds it (built-ins first)."""
        with self.lock:
            return effective_models(self.system, self.db)


def effective_models(
    system: dict[str, dict[str, Any]], db: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for model, file_model in system.items():
        stored = db.get(model) or {}
        out[model] = {
            **file_model,
            **stored,
            "provider": stored.get("provider") or file_model["provider"],
            "type": stored.get("type") or file_model["type"],
            "isCustom": False,
        }
    for model, stored in db.items():
        if model not in out:
            out[model] = {**stored, "isCustom": True}
    return out


def merged_update(
    system: dict[str, dict[str, Any]],
    db: dict[str, dict[str, Any]],
    model: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The document FastGPT's model/update stores for `model` (update.ts l.27-46)."""
    found = effective_models(system, db).get(model) or {}  # findModelFromAlldata
    concat = {**found, **(db.get(model) or {}), **metadata}
    concat.pop("avatar", None)
    concat.pop("isCustom", None)
    concat["model"] = model
    if isinstance(concat.get("name"), str):
        concat["name"] = concat["name"].strip()
    return {k: v for k, v in concat.items() if v is not None}


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
            metadata = (body or {}).get("metadata") or {}
            state.db[model] = merged_update(state.system, state.db, model, metadata)
        return _ok({})

    @app.post("/api/core/ai/model/updateWithJson")
    async def update_with_json(request: Request) -> JSONResponse:
        body, authed = await record(request)
        if not authed:
            return _err("unAuthorization", 403)
        items = json.loads((body or {}).get("config") or "[]")
        with state.lock:
            state.db = {i["model"]: i["metadata"] for i in items}
        return _ok({})

    return app


class FakeFastGPT:
    """Serves the fake on 127.0.0.1 at a free port until `stop()`."""

    def __init__(
        self, root_password: str = "1234", system: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.state = FakeFastGPTState(
            root_password=root_password,
            system=load_system_models() if system is None else system,
        )
        self._served = ServedApp(create_app(self.state))
        self.url = self._served.url

    def stop(self) -> None:
        self._served.stop()
