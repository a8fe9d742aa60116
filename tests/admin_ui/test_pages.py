"""Admin UI pages over plain HTTP: validation messages from the admin API's own models, htmx
fragments, FastGPT overrides, and the dashboard's aggregate numbers."""

from __future__ import annotations

import re
import time

import openai
import pytest

from tests.admin_ui.helpers import UIClient


def logged_in(gateway) -> UIClient:
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get("/ui")
    return ui


def htmx(ui: UIClient, path: str, data: dict | None = None):
    return ui.http.post(
        path, data=data or {}, headers={"X-CSRF-Token": ui.csrf, "HX-Request": "true"}
    )


def test_channel_form_validation_and_actions(gateway, fake_upstream):
    ui = logged_in(gateway)
    bad = ui.post("/ui/channels/new", {"type": "50", "name": "x", "model_mapping": "[1]"})
    assert bad.status_code == 400 and "model_mapping must be a JSON object" in bad.text
    unknown = ui.post("/ui/channels/new", {"type": "999", "name": "x"})
    assert unknown.status_code == 400 and "unknown channel type 999" in unknown.text
    assert [c["name"] for c in gateway.api("GET", "/api/channel/") if c["type"] != 0] == []

    unreachable = htmx(
        ui, "/ui/channels/fetch-models", {"type": "50", "base_url": "http://127.0.0.1:9/v1"}
    )
    assert "could not list models" in unreachable.text

    made = ui.post(
        "/ui/channels/new",
        {
            "type": "50",
            "name": "up",
            "base_url": fake_upstream.url,
            "key": "k1",
            "models": "gpt-4o-mini, text-embedding-3-small",
        },
    )
    assert made.status_code == 303
    cid = int(made.headers["location"].rsplit("/", 1)[1])
    # Editing with the key left empty keeps the stored key (fetch uses it too).
    fetched = htmx(
        ui,
        "/ui/channels/fetch-models",
        {"type": "50", "base_url": fake_upstream.url, "id": str(cid), "models": "a"},
    )
    assert "a,gpt-4o-mini" in fetched.text
    emb = htmx(ui, f"/ui/channels/{cid}/test?model=text-embedding-3-small")
    assert "answered in" in emb.text and "embedding test" in emb.text
    assert fake_upstream.requests[-1].path.endswith("/embeddings")
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer k1"

    off = htmx(ui, f"/ui/channels/{cid}/status")
    assert "disabled" in off.text and "Enable" in off.text
    assert gateway.api("GET", f"/api/channel/{cid}")["status"] == 2
    assert "gpt-4o-mini" not in gateway.app.state.services.routes.models("default")
    htmx(ui, f"/ui/channels/{cid}/status")
    assert "gpt-4o-mini" in gateway.app.state.services.routes.models("default")
    assert htmx(ui, f"/ui/channels/{cid}/delete").text == ""
    assert "gpt-4o-mini" not in gateway.app.state.services.routes.models("default")


def test_token_form_validation_toggle_and_usage(gateway):
    ui = logged_in(gateway)
    bad = ui.post("/ui/tokens", {"name": "t", "subnet": "not-a-cidr"})
    assert bad.status_code == 400 and "not a CIDR" in bad.text
    made = ui.post(
        "/ui/tokens",
        {
            "name": "limited",
            "remain_quota": "1000",
            "models": "a, b",
            "subnet": "127.0.0.0/8",
            "rpm": "5",
            "expires": "2099-01-01T00:00",
        },
    )
    assert made.status_code == 303
    page = ui.get("/ui/tokens")
    key = re.search(r'id="new-key" readonly value="([^"]+)"', page.text).group(1)
    assert key.startswith("sk-")
    assert 'id="new-key"' not in ui.get("/ui/tokens").text
    tok = gateway.api("GET", "/api/token/")[0]
    assert (tok["models"], tok["rpm"], tok["remain_quota"]) == ("a,b", 5, 1000)
    assert tok["expired_time"] > time.time() + 365 * 86400

    row = htmx(ui, f"/ui/tokens/{tok['id']}/status")
    assert "disabled" in row.text
    with pytest.raises(openai.AuthenticationError, match="disabled"):
        gateway.openai(key).models.list()


def test_fastgpt_override_and_download(gateway, fake_upstream):
    ui = logged_in(gateway)
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="gpt-4o-mini")
    bad = ui.post("/ui/fastgpt/override", {"model": "gpt-4o-mini", "data": "[]"})
    assert bad.status_code == 303 and "must be a JSON object" in ui.get("/ui/fastgpt").text
    ui.post("/ui/fastgpt/override", {"model": "gpt-4o-mini", "data": '{"name": "Mini"}'})
    dl = ui.get("/ui/fastgpt/download?format=config&api_key=sk-for-fastgpt")
    assert dl.headers["content-disposition"] == 'attachment; filename="config.json"'
    llm = dl.json()["llmModels"]
    assert [(m["model"], m["name"]) for m in llm] == [("gpt-4o-mini", "Mini")]
    assert "sk-for-fastgpt" in dl.text
    assert ui.get("/ui/fastgpt/download?format=nope").status_code == 400


def test_dashboard_aggregates_usage_per_model_and_channel(gateway, fake_upstream):
    ui = logged_in(gateway)
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="m1,m2")
    client = gateway.openai(gateway.create_token())
    for model in ("m1", "m1", "m2"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    fake_upstream.reset(status=500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m2", messages=[{"role": "user", "content": "x"}])
    gateway.flush_usage()
    page = ui.get("/ui?range=1h").text
    per_model = page[page.index("Per model (1h)") : page.index("Per channel (1h)")]
    cells = re.findall(
        r"<tr><td>(m\d)</td><td>(\d+)</td><td>\d+</td><td>(\d+)</td></tr>", per_model
    )
    assert sorted(cells) == [("m1", "2", "0"), ("m2", "2", "1")]
    assert "<svg" in page and 'aria-label="Requests per model"' in page
