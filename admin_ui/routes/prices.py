"""Prices: what every served or priced model is billed at now (admin, config file or litellm's
default), set or clear an admin price. The same service as /api/price/ (gateway.billing.
price_admin); an edit reloads the price book on every replica through the change bus."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from admin_ui.web import UserDep, flash, form_of, form_str, render
from gateway.admin_api.envelope import first_error
from gateway.billing import price_admin as svc
from gateway.services import services_of

router = APIRouter(prefix="/prices")


@router.get("")
async def page(request: Request, session: UserDep) -> Response:
    st = services_of(request)
    q = request.query_params.get("q", "").strip()
    return render(
        request,
        "prices.html",
        session,
        page="prices",
        rows=svc.price_list(st.prices, st.routes, q),
        q=q,
    )


@router.post("")
async def save(request: Request, session: UserDep) -> Response:
    form = await form_of(request)
    fields = {n: form_str(form, n) for n in ("model", "input", "output")}
    try:
        data = svc.PriceIn.model_validate({k: v or 0 for k, v in fields.items()})
    except ValidationError as exc:
        flash(session, f"price not saved: {first_error(exc)}", "error")
        return RedirectResponse("/ui/prices", 303)
    async with services_of(request).sessions() as db:
        await svc.save_price(db, data)
    await services_of(request).changes.prices_changed()
    flash(session, f"{data.model}: {data.input:g} USD in, {data.output:g} USD out per 1M tokens")
    return RedirectResponse("/ui/prices", 303)


@router.post("/delete")
async def delete(request: Request, session: UserDep) -> Response:
    model = form_str(await form_of(request), "model")
    async with services_of(request).sessions() as db:
        found = await svc.delete_price(db, model)
    if found:
        await services_of(request).changes.prices_changed()
        flash(session, f"{model}: admin price removed, the config or default price applies")
    else:
        flash(session, f"{model} has no admin price", "error")
    return RedirectResponse("/ui/prices", 303)
