"""Token checks on /v1/*: every way a key can be unusable gets a clear OpenAI-shaped error."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def served(gateway, fake_upstream):
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="m,other")
    return gateway


def test_keys_are_stored_hashed_and_shown_once(served):
    created = served.api("POST", "/api/token/", json={"name": "k", "unlimited_quota": True})
    key = created["key"]
    assert key.startswith("sk-") and len(key) == 51
    listed = served.api("GET", f"/api/token/{created['id']}")
    assert listed["key"] != key and "…" in listed["key"]
    db = served.app.state.services.settings.home / "modelport.db"
    assert key.encode() not in db.read_bytes()


def test_missing_and_wrong_keys(served):
    r = httpx.post(f"{served.url}/v1/chat/completions", json={"model": "m", "messages": MSG})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError) as exc:
        served.openai("sk-wrong").chat.completions.create(model="m", messages=MSG)
    assert exc.value.code == "invalid_api_key"


def test_disabled_token(served):
    key = served.create_token(name="d")
    tid = served.api("GET", "/api/token/", params={"keyword": "d"})[0]["id"]
    served.api("PUT", "/api/token/", params={"status_only": 1}, json={"id": tid, "status": 2})
    with pytest.raises(openai.AuthenticationError, match="disabled"):
        served.openai(key).chat.completions.create(model="m", messages=MSG)
    served.api("PUT", "/api/token/", params={"status_only": 1}, json={"id": tid, "status": 1})
    served.openai(key).chat.completions.create(model="m", messages=MSG)


def test_expired_token(served):
    key = served.create_token(name="e", expired_time=int(time.time()) - 10)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        served.openai(key).chat.completions.create(model="m", messages=MSG)


def test_exhausted_token(served):
    key = served.create_token(name="x", unlimited_quota=False, remain_quota=0)
    with pytest.raises(openai.RateLimitError) as exc:
        served.openai(key).chat.completions.create(model="m", messages=MSG)
    assert exc.value.code == "insufficient_quota"


def test_model_allow_list(served):
    key = served.create_token(name="w", models="m")
    served.openai(key).chat.completions.create(model="m", messages=MSG)
    with pytest.raises(openai.PermissionDeniedError) as exc:
        served.openai(key).chat.completions.create(model="other", messages=MSG)
    assert exc.value.code == "model_not_allowed" and "m" in exc.value.message


def test_subnet(served):
    ok = served.create_token(name="s1", subnet="127.0.0.0/8")
    served.openai(ok).chat.completions.create(model="m", messages=MSG)
    bad = served.create_token(name="s2", subnet="10.0.0.0/8")
    with pytest.raises(openai.PermissionDeniedError, match=r"10\.0\.0\.0/8"):
        served.openai(bad).chat.completions.create(model="m", messages=MSG)


def test_bad_subnet_is_refused_at_creation(served):
    r = served.admin.post("/api/token/", json={"name": "b", "subnet": "not-a-cidr"})
    assert r.json()["success"] is False and "CIDR" in r.json()["message"]


def test_initial_token_from_settings(make_gateway, fake_upstream):
    gw = make_gateway(initial_token="sk-fastgpt-fixed-key")
    gw.add_channel(name="up", base_url=fake_upstream.url, models="m")
    gw.openai("sk-fastgpt-fixed-key").chat.completions.create(model="m", messages=MSG)


def test_admin_api_refuses_missing_or_wrong_credentials(gateway):
    for headers in ({}, {"Authorization": "wrong"}, {"Authorization": "Bearer wrong"}):
        for method, path in (
            ("GET", "/api/channel/"),
            ("GET", "/api/token/"),
            ("GET", "/api/log/"),
            ("POST", "/api/token/"),
            ("GET", "/api/export/fastgpt"),
        ):
            r = httpx.request(method, gateway.url + path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers)
            assert r.json()["success"] is False
    assert httpx.get(gateway.url + "/api/status").json()["success"] is True
    r = httpx.get(
        gateway.url + "/api/token/",
        headers={"Authorization": "Bearer " + "admin-test-token-0123456789"},
    )
    assert r.json()["success"] is True
