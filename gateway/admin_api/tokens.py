"""/api/token/*: One API's token endpoints (parse, call TokenService, shape the answer). The full
key is returned once, at creation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from gateway.admin_api.envelope import fail, first_error, json_body, ok, page_params
from gateway.db.crud import tokens as crud
from gateway.db.models import TokenCreate, TokenCreated, TokenUpdate
from gateway.db.tables import Token
from gateway.deps import SessionDep, TokensDep

router = APIRouter(prefix="/token")


@router.get("/")
async def list_tokens(request: Request, session: SessionDep) -> dict[str, Any]:
    p, size = page_params(request)
    rows, total = await crud.list_tokens(
        session, page=p, page_size=size, keyword=request.query_params.get("keyword", "")
    )
    return ok([crud.to_public(r).model_dump() for r in rows], total=total)


@router.get("/search")
async def search_tokens(request: Request, session: SessionDep) -> dict[str, Any]:
    rows, total = await crud.list_tokens(
        session, page_size=500, keyword=request.query_params.get("keyword", "")
    )
    return ok([crud.to_public(r).model_dump() for r in rows], total=total)


@router.get("/{token_id}")
async def get_token(token_id: int, session: SessionDep) -> dict[str, Any]:
    row = await session.get(Token, token_id)
    return ok(crud.to_public(row).model_dump()) if row else fail(f"token {token_id} does not exist")


@router.post("/")
async def add_token(request: Request, tokens: TokensDep) -> dict[str, Any]:
    try:
        data = TokenCreate.model_validate(await json_body(request))
    except ValidationError as exc:
        return fail(first_error(exc))
    row, key = await tokens.create(data)
    public = crud.to_public(row).model_dump()
    public["key"] = key
    return ok(
        TokenCreated(**public).model_dump(), message="copy the key now: it is shown only once"
    )


@router.put("/")
async def update_token(request: Request, tokens: TokensDep) -> dict[str, Any]:
    try:
        data = TokenUpdate.model_validate(await json_body(request))
    except ValidationError as exc:
        return fail(first_error(exc))
    status_only = request.query_params.get("status_only") not in (None, "", "0", "false")
    row = await tokens.update(data, status_only=status_only)
    if row is None:
        return fail(f"token {data.id} does not exist")
    return ok(crud.to_public(row).model_dump())


@router.delete("/{token_id}")
async def delete_token(token_id: int, tokens: TokensDep) -> dict[str, Any]:
    if not await tokens.delete(token_id):
        return fail(f"token {token_id} does not exist")
    return ok()
