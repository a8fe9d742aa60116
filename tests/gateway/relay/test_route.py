"""Relay routes called directly (gateway/relay/route.py, "Direct calls"): once a route has answered,
the middleware sends its requests straight to the handler, past FastAPI's router. Every answer --
success, the caller's errors, the upstream's -- must be the one FastAPI's path gave."""

from __future__ import annotations

import httpx

from gateway.middleware import GatewayMiddleware

CASES = [
    ("no key", {}, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ("bad key", {"Authorization": "Bearer sk-nope"}, {"model": "m", "messages": []}),
    ("invalid body", None, {"model": "m", "messages": []}),
    ("not JSON", None, b"{nope"),
    ("unknown model", None, {"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
    ("ok", None, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
]


def _middleware(app):
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, GatewayMiddleware):
        layer = getattr(layer, "app", None)
    assert layer is not None
    return layer


def _ask(gw, key, headers, body):
    h = {"Authorization": f"Bearer {key}"} if headers is None else headers
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    if isinstance(body, bytes):
        h = {**h, "Content-Type": "application/json"}
    r = httpx.post(f"{gw.url}/v1/chat/completions", headers=h, timeout=30, **kw)
    answer = r.json()
    if "error" not in answer:  # a completion: its id and timing differ between calls
        answer = {"choices": answer["choices"], "model": answer["model"]}
    return r.status_code, answer, r.headers.get("content-type")


def test_direct_calls_answer_as_fastapi_routing_did(make_gateway, fake_upstream):
    gw = make_gateway()
    gw.add_channel(base_url=fake_upstream.url, models="m")
    key = gw.create_token()
    middleware = _middleware(gw.app)
    assert ("POST", "/v1/chat/completions") not in middleware._direct
    routed = [_ask(gw, key, headers, body) for _, headers, body in CASES]
    assert ("POST", "/v1/chat/completions") in middleware._direct  # learned from those
    direct = [_ask(gw, key, headers, body) for _, headers, body in CASES]
    for (name, _, _), a, b in zip(CASES, routed, direct, strict=True):
        assert a == b, name
    statuses = [s for s, _, _ in direct]
    assert statuses == [401, 401, 400, 400, 404, 200]


def test_other_methods_and_paths_still_go_through_fastapi(make_gateway, fake_upstream):
    gw = make_gateway()
    gw.add_channel(base_url=fake_upstream.url, models="m")
    key = gw.create_token()
    ok = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(
            f"{gw.url}/v1/chat/completions", json=ok, headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 200
    )
    r = httpx.get(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 405
    assert "not allowed" in r.json()["error"]["message"]
    r = httpx.post(
        f"{gw.url}/v1/chat/completions/", json=ok, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code in (307, 404)  # FastAPI's own answer for a trailing slash
