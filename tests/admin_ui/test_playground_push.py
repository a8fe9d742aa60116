"""Playground fragments (embeddings similarity, transcription upload, image generation) relayed
as the admin caller, and pushing the export to a (fake) FastGPT from the UI."""

from __future__ import annotations

from tests.admin_ui.helpers import UIClient
from tests.support.fake_fastgpt import FakeFastGPT


def logged_in(gateway) -> UIClient:
    ui = UIClient(gateway.url)
    ui.setup()
    ui.get("/ui")
    return ui


def test_playground_embeddings_transcription_image(gateway, fake_upstream):
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="emb,whisper-1,img")
    ui = logged_in(gateway)
    hdr = {"X-CSRF-Token": ui.csrf, "HX-Request": "true"}
    emb = ui.http.post(
        "/ui/playground/embeddings", data={"model": "emb", "a": "ab", "b": "ab"}, headers=hdr
    )
    assert 'id="similarity">1.0000<' in emb.text
    assert fake_upstream.requests[-1].body == {"model": "emb", "input": ["ab", "ab"]}

    wav = b"RIFF" + b"\0" * 2000
    stt = ui.http.post(
        "/ui/playground/transcribe",
        data={"model": "whisper-1"},
        files={"file": ("a.wav", wav, "audio/wav")},
        headers=hdr,
    )
    assert "transcribed 2004 bytes" in stt.text
    assert (
        ui.http.post(
            "/ui/playground/transcribe",
            data={"model": "whisper-1"},
            files={"file": ("a.wav", wav, "audio/wav")},
        ).status_code
        == 403
    )

    img = ui.http.post(
        "/ui/playground/image", data={"model": "img", "prompt": "a cat"}, headers=hdr
    )
    assert '<img class="generated" src="data:image/png;base64,' in img.text

    missing = ui.http.post(
        "/ui/playground/embeddings", data={"model": "nope", "a": "x", "b": "y"}, headers=hdr
    )
    assert "nope" in missing.text and 'role="alert"' in missing.text

    gateway.flush_usage()
    logs = gateway.api("GET", "/api/log/")
    assert {r["endpoint"] for r in logs if r["token_name"] == "admin"} >= {
        "embeddings",
        "transcriptions",
        "images",
    }


def test_push_to_fastgpt_from_the_ui(gateway, fake_upstream):
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="gpt-4o-mini")
    ui = logged_in(gateway)
    fastgpt = FakeFastGPT(root_password="rootpw")
    try:
        hdr = {"X-CSRF-Token": ui.csrf, "HX-Request": "true"}
        wrong = ui.http.post(
            "/ui/fastgpt/push", data={"url": fastgpt.url, "root_password": "bad"}, headers=hdr
        )
        assert "push failed" in wrong.text
        done = ui.http.post(
            "/ui/fastgpt/push",
            data={"url": fastgpt.url, "root_password": "rootpw", "api_key": "sk-x"},
            headers=hdr,
        )
        assert "pushed 1 of 1 model(s)" in done.text and "gpt-4o-mini" in done.text
        assert "gpt-4o-mini" in fastgpt.state.models
    finally:
        fastgpt.stop()
