"""Each surface answers every error in its own shape, mapped once at its edge
(gateway.error_handlers).

- /v1/*: OpenAI's ErrorResponse, `{"error": {"message", "type", "param", "code"}}`, nothing else
  (openai/openai-openapi openapi.yaml, components.schemas.Error `required: [type, message, param,
  code]`, ErrorResponse `required: [error]`; lines 38249 and 38286 at commit f85dbe2); the
  official client raises the matching class.
- /api/*: One API's `{"success": false, "message": ...}` (songquanpeng/one-api
  controller/channel.go: every failure is `c.JSON(http.StatusOK, gin.H{"success": false,
  "message": err.Error()})`), with our `data: null` and the real status.
- Xinference's model API: `{"detail": ...}` (shared/reference/xinference.md).
"""

from __future__ import annotations

import gzip
import socket

import httpx
import openai
import pytest

from tests.conftest import ADMIN_TOKEN

ERROR_KEYS = {"message", "type", "param", "code"}


def openai_error(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def envelope_error(r: httpx.Response) -> str:
    body = r.json()
    assert body == {"success": False, "message": body["message"], "data": None}, body
    assert isinstance(body["message"], str) and body["message"]
    return body["message"]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def ctx(make_gateway, fake_upstream):
    gw = make_gateway()
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    gw.add_channel(name="down", base_url=f"http://127.0.0.1:{closed_port()}/v1", models="gone")
    return gw, gw.create_token()


def test_v1_errors_are_openai_error_responses(ctx):
    gw, key = ctx
    auth = {"Authorization": f"Bearer {key}"}
    chat = f"{gw.url}/v1/chat/completions"
    msgs = [{"role": "user", "content": "hi"}]

    r = httpx.post(chat, content=b'{"model": "m", "messages": [', headers=auth)
    e = openai_error(r)
    assert r.status_code == 400 and e["type"] == "invalid_request_error"
    assert e["code"] == "invalid_request" and "not valid JSON" in e["message"]

    r = httpx.post(chat, json={"model": "nope", "messages": msgs}, headers=auth)
    e = openai_error(r)
    assert r.status_code == 404 and e["code"] == "model_not_found" and "m" in e["message"]

    r = httpx.post(chat, json={"model": "m", "messages": msgs}, headers={"Authorization": "x"})
    e = openai_error(r)
    assert r.status_code == 401 and e["type"] == "authentication_error"

    r = httpx.post(chat, json={"model": "gone", "messages": msgs}, headers=auth)
    e = openai_error(r)
    assert r.status_code in (502, 503) and e["type"] in ("upstream_error", "server_error")
    assert "127.0.0.1" not in e["message"]  # the caller never learns upstream addresses

    r = httpx.get(f"{gw.url}/v1/no-such-route", headers=auth)
    assert r.status_code == 404 and openai_error(r)["code"] == "not_found"

    with pytest.raises(openai.AuthenticationError) as info:
        gw.openai("sk-wrong").chat.completions.create(model="m", messages=msgs)
    assert set(info.value.body) == ERROR_KEYS


def test_api_errors_are_one_api_envelopes(gateway):
    r = gateway.admin.post(
        "/api/channel/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "not valid JSON" in envelope_error(r)
    r = httpx.get(f"{gateway.url}/api/channel/", headers={"Authorization": "wrong"})
    assert r.status_code == 401 and envelope_error(r)
    r = gateway.admin.get("/api/no-such-route")
    assert r.status_code == 404 and "no such endpoint" in envelope_error(r)
    r = gateway.admin.get("/api/channel/", params={"p": "x"})
    assert r.status_code == 400 and "p must be an integer" in envelope_error(r)


def test_middleware_refusals_follow_the_surface(gateway):
    """The body-size and encoding refusals happen before routing, in GatewayMiddleware; they
    still answer in the shape of the surface the request was for."""
    gz = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    body = gzip.compress(b"{}")
    r = gateway.admin.post("/api/channel/", content=body, headers=gz)
    assert r.status_code == 415 and "uncompressed" in envelope_error(r)
    r = httpx.post(f"{gateway.url}/v1/chat/completions", content=body, headers=gz)
    assert r.status_code == 415 and openai_error(r)["code"] == "unsupported_content_encoding"


def test_xinference_launch_errors_are_detail(gateway):
    r = httpx.post(
        f"{gateway.url}/v1/models",
        content=b"{not json",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 400 and set(r.json()) == {"detail"}
    assert "not valid JSON" in r.json()["detail"]


def test_openapi_declares_the_openai_error(gateway):
    """/openapi.json carries OpenAI's ErrorResponse and every /v1 route of the relay refers to it
    for its 4xx/5xx answers, so a client generated from our schema parses our errors."""
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["ErrorResponse"]["required"] == ["error"]
    error_object = schemas["ErrorResponse"]["properties"]["error"]["$ref"].rsplit("/", 1)[1]
    assert set(schemas[error_object]["required"]) == ERROR_KEYS
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    relay = [
        ("/v1/chat/completions", "post"),
        ("/v1/completions", "post"),
        ("/v1/embeddings", "post"),
        ("/v1/rerank", "post"),
        ("/v1/audio/transcriptions", "post"),
        ("/v1/images/generations", "post"),
        ("/v1/models", "get"),
    ]
    for path, method in relay:
        responses = spec["paths"][path][method]["responses"]
        for status in ("400", "401", "404", "429", "500", "502", "503"):
            assert responses[status]["content"]["application/json"]["schema"] == ref, (
                path,
                status,
            )


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _declared(spec: dict, path: str, method: str, status: int) -> dict:
    responses = spec["paths"][path][method]["responses"]
    response = responses.get(str(status), responses.get("default"))
    assert response is not None, (path, method, status)
    return _resolve(spec, response["content"]["application/json"]["schema"])


def _fits(spec: dict, schema: dict, body: object) -> None:
    """`body` has exactly the object keys `schema` declares (nested objects too)."""
    schema = _resolve(spec, schema)
    if schema.get("type") != "object":
        return
    assert isinstance(body, dict), (schema, body)
    assert set(schema.get("required", ())) <= set(body) <= set(schema["properties"]), (
        schema,
        body,
    )
    for key, value in body.items():
        _fits(spec, schema["properties"][key], value)


def test_openapi_declares_each_surfaces_real_error_shape(gateway):
    """No operation keeps FastAPI's `422 HTTPValidationError` (validation errors answer 400 in
    the surface's shape); every error an operation declares is its surface's body; and a real
    bad request to each surface fits what the schema declares for it."""
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    assert "HTTPValidationError" not in str(spec) and "ValidationError" not in spec["components"]
    xinference = {"XinferenceError"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation["responses"].items() if not s.startswith("2")}
            assert "422" not in errors and "default" in errors, (path, method)
            for status, response in errors.items():
                name = response["content"]["application/json"]["schema"]["$ref"].rsplit("/")[-1]
                if path.startswith("/api/"):
                    assert name == "OneApiError", (path, method, status)
                elif "Xinference model API" in operation.get("tags", ()) and status != "default":
                    assert name in xinference, (path, method, status)
                else:
                    assert name == "ErrorResponse", (path, method, status)

    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    bad_json = b"{not json"
    for method, path, url in (
        ("post", "/v1/chat/completions", "/v1/chat/completions"),
        ("post", "/api/channel/", "/api/channel/"),
        ("get", "/api/channel/{channel_id}", "/api/channel/not-a-number"),
        ("post", "/v1/models", "/v1/models"),
    ):
        r = httpx.request(method, f"{gateway.url}{url}", content=bad_json, headers=auth)
        assert r.status_code == 400, (url, r.text)
        _fits(spec, _declared(spec, path, method, 400), r.json())
    r = httpx.post(f"{gateway.url}/v1/models", content=bad_json, headers={"Authorization": "x"})
    assert r.status_code == 401
    _fits(spec, _declared(spec, "/v1/models", "post", 401), r.json())
