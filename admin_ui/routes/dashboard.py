"""Dashboard: usage charts per model and per channel, running local models, channel health."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from admin_ui import charts, runtime_view, stats
from admin_ui.web import UserDep, render
from gateway.db.crud.channels import all_channels
from gateway.services import services_of

router = APIRouter()


@router.get("")
async def dashboard(request: Request, session: UserDep) -> Response:
    state = services_of(request)
    range_name = request.query_params.get("range", "24h")
    if range_name not in stats.RANGES:
        range_name = "24h"
    async with state.sessions() as db:
        by_model = await stats.usage_series(db, by="model", range_name=range_name)
        by_channel = await stats.usage_series(db, by="channel", range_name=range_name)
        channels = await all_channels(db)
    chart_rows = [
        (
            "Requests per model",
            charts.line_chart("Requests per model", by_model.buckets, by_model.requests),
        ),
        (
            "Tokens per model",
            charts.line_chart("Tokens per model", by_model.buckets, by_model.tokens),
        ),
        (
            "Errors per model",
            charts.line_chart("Errors per model", by_model.buckets, by_model.errors),
        ),
        (
            "Requests per channel",
            charts.line_chart("Requests per channel", by_channel.buckets, by_channel.requests),
        ),
        (
            "Errors per channel",
            charts.line_chart("Errors per channel", by_channel.buckets, by_channel.errors),
        ),
    ]
    health = [
        {
            "channel": ch,
            "breaker": state.health.state(f"{ch.id}@{ch.base_url}"),
        }
        for ch in channels
        if not ch.builtin
    ]
    return render(
        request,
        "dashboard.html",
        session,
        page="dashboard",
        range_name=range_name,
        ranges=list(stats.RANGES),
        charts=chart_rows,
        model_totals=by_model.totals(),
        channel_totals=by_channel.totals(),
        health=health,
        running=await runtime_view.instances(request),
        runtime_enabled=runtime_view.runtime_of(request) is not None,
        duration=runtime_view.duration,
    )
