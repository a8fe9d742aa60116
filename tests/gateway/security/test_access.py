"""Every endpoint but the public few refuses missing or wrong credentials; CORS is closed unless
configured; header and multipart limits; trust_remote_code is off by default."""

from __future__ import annotations

import re

import httpx
import pytest

PUBLIC = {
    "/health",
    "/api/status",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/v1/cluster/auth",  # Xinference clients ask whether auth is on; it says {"auth": true}
}


def _routes(app):
    def walk(routes):
        for r in routes:
            if type(r).__name__ == "_IncludedRouter":
                yield from walk(r.effective_candidates())
            elif hasattr(r, "methods") and r.methods:
                yield r

    for r in walk(app.routes):
        for m in sorted(r.methods - {"HEAD"}):
            yield m, r.path


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture
def full_gateway(make_gateway):
    """With the local runtime installed, so its /v1/models and /api/runtime routes are checked."""
    return make_gateway(runtime_enabled=True)


def test_every_api_and_v1_route_needs_credentials(full_gateway):
    gw = full_gateway
    user_key = gw.create_token(name="user")
    checked = []
    for method, path in _routes(gw.app):
        if path in PUBLIC or not (path.startswith(("/api", "/v1")) or path == "/metrics"):
            continue
        url = gw.url + _concrete(path)
        creds = [None, "Bearer sk-wrong", "wrong-admin-token"]
        if path.startswith("/api") or path == "/metrics":
            creds.append(f"Bearer {user_key}")  # an API token is not an admin credential
        for auth in creds:
            headers = {"Authorization": auth} if auth else {}
            r = httpx.request(method, url, headers=headers, json={}, timeout=30)
            # 429: this address sent too many wrong credentials (gateway.auth.guard), a refusal
            refused = r.status_code in (401, 403) or (r.status_code == 429 and "too many" in r.text)
            assert refused, (method, path, auth, r.status_code, r.text)
        checked.append((method, path))
    paths = {p for _, p in checked}
    assert {
        "/api/channel/",
        "/api/token/",
        "/api/log/",
        "/v1/chat/completions",
        "/metrics",
    } <= paths
    assert ("POST", "/v1/models") in checked  # the runtime's launch endpoint
    assert len(checked) > 25


def test_public_endpoints(gateway):
    assert httpx.get(f"{gateway.url}/health").status_code == 200
    assert httpx.get(f"{gateway.url}/api/status").json()["success"]


def test_metrics_public_setting(make_gateway):
    closed = make_gateway()
    assert httpx.get(f"{closed.url}/metrics").status_code == 401
    assert closed.admin.get("/metrics").status_code == 200
    opened = make_gateway(metrics_public=True)
    assert httpx.get(f"{opened.url}/metrics").status_code == 200


def test_cors_closed_by_default(make_gateway):
    gw = make_gateway()
    pre = httpx.options(
        f"{gw.url}/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers
    gw2 = make_gateway(cors_origins=["https://ui.example"])
    ok = httpx.options(
        f"{gw2.url}/v1/chat/completions",
        headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"},
    )
    assert ok.headers["access-control-allow-origin"] == "https://ui.example"
    bad = httpx.options(
        f"{gw2.url}/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in bad.headers


def test_header_limits(make_gateway):
    gw = make_gateway(max_header_count=30, max_header_bytes=4096)
    many = {f"x-h{i}": "v" for i in range(40)}
    r = httpx.get(f"{gw.url}/health", headers=many)
    assert r.status_code == 431 and r.json()["error"]["code"] == "request_header_fields_too_large"
    big = {"x-big": "v" * 5000}
    assert httpx.get(f"{gw.url}/health", headers=big).status_code == 431
    assert httpx.get(f"{gw.url}/health", headers={"x-ok": "v"}).status_code == 200


def test_multipart_part_limits(make_gateway, fake_upstream):
    gw = make_gateway(max_form_fields=4, max_form_files=1)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="whisper-1")
    key = gw.create_token()
    files = [("file", ("a.wav", b"RIFF", "audio/wav")), ("file", ("b.wav", b"RIFF", "audio/wav"))]
    r = httpx.post(
        f"{gw.url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        data={"model": "whisper-1"},
        files=files,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_form_parts"
    fields = {"model": "whisper-1", **{f"f{i}": "x" for i in range(6)}}
    r = httpx.post(
        f"{gw.url}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        data=fields,
        files=files[:1],
    )
    assert r.status_code == 400
    assert fake_upstream.requests == []


def test_upstream_response_size_limit(make_gateway, fake_upstream):
    fake_upstream.reset(reply="word " * 2000)
    gw = make_gateway(max_response_bytes=4000)
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    client = gw.openai(gw.create_token())
    import openai

    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 502 and "exceeds 4000 bytes" in exc.value.message
    with pytest.raises(openai.APIError) as exc2:
        for _ in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass
    assert "more than 4000 bytes" in str(exc2.value)


def test_trust_remote_code_is_off_by_default():
    from local_runtime.spec import LaunchSpec

    assert LaunchSpec.model_fields["trust_remote_code"].default is False
