"""/api/price/* (modelport's price CRUD) and /api/option/ (One API's options endpoint, for its
ModelRatio and CompletionRatio maps), in One API's `{success, message, data}` envelope.

One API's shapes (songquanpeng/one-api): `GET /api/option/` answers `data: [{key, value}]` with
every value a string (controller/option.go GetOptions); `PUT /api/option/` takes one `{key, value}`
(UpdateOption); ModelRatio and CompletionRatio values are JSON objects serialised to strings
(model/option.go, relay/billing/ratio/model.go). modelport keeps no other One API option, so any
other key is refused with a message rather than silently stored.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError

from gateway.admin_api.envelope import fail, first_error, json_body, ok
from gateway.billing import price_admin as svc
from gateway.billing.prices import QUOTA_PER_USD
from gateway.deps import SessionDep
from gateway.services import services_of

prices_router = APIRouter(prefix="/price")
options_router = APIRouter(prefix="/option")


@prices_router.get("/")
async def list_prices(request: Request) -> dict[str, Any]:
    st = services_of(request)
    rows = svc.price_list(st.prices, st.routes, request.query_params.get("keyword", ""))
    return ok([r.model_dump() for r in rows], total=len(rows))


@prices_router.get("/{model:path}")
async def get_price(model: str, request: Request) -> dict[str, Any]:
    st = services_of(request)
    for row in svc.price_list(st.prices, st.routes, model):
        if row.model == model:
            return ok(row.model_dump())
    return fail(f"model {model!r} is neither served nor priced")


@prices_router.post("/")
@prices_router.put("/")
async def set_price(request: Request, session: SessionDep) -> dict[str, Any]:
    try:
        data = svc.PriceIn.model_validate(await json_body(request))
    except ValidationError as exc:
        return fail(first_error(exc))
    await svc.save_price(session, data)
    await services_of(request).changes.prices_changed()
    return await get_price(data.model, request)


@prices_router.delete("/{model:path}")
async def delete_price(model: str, request: Request, session: SessionDep) -> dict[str, Any]:
    if not await svc.delete_price(session, model):
        return fail(f"model {model!r} has no admin price (config and default prices stay)")
    await services_of(request).changes.prices_changed()
    return ok()


@options_router.get("/")
async def get_options(request: Request) -> dict[str, Any]:
    st = services_of(request)
    model_ratio, completion_ratio = svc.ratio_maps(st.prices, st.routes)
    dump = orjson.OPT_SORT_KEYS  # Go's json.Marshal writes map keys sorted
    return ok(
        [
            {"key": "ModelRatio", "value": orjson.dumps(model_ratio, option=dump).decode()},
            {
                "key": "CompletionRatio",
                "value": orjson.dumps(completion_ratio, option=dump).decode(),
            },
            {"key": "QuotaPerUnit", "value": str(QUOTA_PER_USD)},
        ]
    )


@options_router.put("/")
async def update_option(request: Request, session: SessionDep) -> dict[str, Any]:
    body = await json_body(request)
    key = body.get("key") if isinstance(body, dict) else None
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(key, str) or not isinstance(value, str):
        return fail('send {"key": "ModelRatio" | "CompletionRatio", "value": "<JSON string>"}')
    if key == "QuotaPerUnit":
        if value.strip() in (str(QUOTA_PER_USD), f"{QUOTA_PER_USD}.0"):
            return ok()
        return fail(f"QuotaPerUnit is fixed at {QUOTA_PER_USD} (One API's default) in modelport")
    if key not in ("ModelRatio", "CompletionRatio"):
        return fail(f"modelport keeps no option {key!r}; it keeps ModelRatio and CompletionRatio")
    try:
        mapping = orjson.loads(value)
        apply = svc.apply_model_ratio if key == "ModelRatio" else svc.apply_completion_ratio
        notes = await apply(session, services_of(request).prices, mapping)
    except orjson.JSONDecodeError as exc:
        return fail(f"{key} is not valid JSON: {exc}")
    except ValidationError as exc:
        return fail(f"{key}: {first_error(exc)}")
    except ValueError as exc:
        return fail(str(exc))
    await services_of(request).changes.prices_changed()
    return ok(message="; ".join(notes))
