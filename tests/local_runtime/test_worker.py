"""The worker process contract (local_runtime/worker), driven with the fake engine.

Real processes on loopback ports, the official openai client; the engines' own behaviour is
tested with real weights in tests/local_runtime/engines/.
"""

from __future__ import annotations

import base64
import io
import json
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from local_runtime import image_links as links
from tests.support.worker import WorkerProcess, spec_dict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LINK_KEY = "k" * 64


def client_for(worker: WorkerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{worker.base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def llm():
    with WorkerProcess(spec_dict(uid="fake-llm")) as w:
        yield w


@pytest.fixture(scope="module")
def media_worker(tmp_path_factory):
    """One fake engine serving every capability, with small upload limit and a files dir."""
    files = tmp_path_factory.mktemp("files")
    spec = spec_dict(
        uid="fake-all",
        model_type="image",
        engine_options={
            "capabilities": ["images", "transcriptions", "translations", "embeddings", "rerank"]
        },
    )
    env = {
        "MODELPORT_FILES_DIR": str(files),
        "MODELPORT_PUBLIC_URL": "http://gw.example:3000",
        links.LINK_KEY_ENV: LINK_KEY,
        links.LINK_TTL_ENV: "600",
    }
    with WorkerProcess(spec, extra_args=["--max-upload-bytes", "2000"], env=env) as w:
        w.files_dir = files
        yield w


# --- lifecycle -------------------------------------------------------------------------------
def test_health_answers_while_loading_and_requests_get_503():
    spec = spec_dict(engine_options={"load_delay_s": 600})
    with WorkerProcess(spec, wait="loading") as w:
        health = w.health()
        assert health["status"] == "loading"
        assert health["uid"] == "fake-llm" and health["engine"] == "fake"
        assert health["pid"] == w.proc.pid and health["rss_bytes"] > 0
        r = httpx.post(f"{w.base_url}/v1/chat/completions", json={"messages": []})
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "model_not_ready"
        # SIGTERM during a (long) load still exits 0, without waiting for the load.
        assert w.stop(timeout=60) == 0


def test_load_failure_is_reported_then_exits_3():
    spec = spec_dict(engine_options={"fail_load": "weights are corrupt"})
    w = WorkerProcess(spec, extra_args=["--error-exit-grace", "2"], wait="error")
    try:
        w.start()
        health = w.wait_for_error()
        assert "weights are corrupt" in health["error"]
        r = httpx.post(f"{w.base_url}/v1/chat/completions", json={"messages": []})
        assert r.status_code == 503 and r.json()["error"]["code"] == "load_failed"
        assert w.proc.wait(60) == 3
        assert "modelport-worker: failed to load 'fake-llm'" in w.stderr()
        assert "weights are corrupt" in w.stderr()
    finally:
        w.stop()


def test_unknown_engine_is_a_load_error():
    w = WorkerProcess(spec_dict(engine="no-such-engine"), wait="error")
    try:
        w.start()
        assert "no-such-engine" in w.wait_for_error()["error"]
    finally:
        assert w.stop() == 0


def test_sigterm_exits_0_after_serving():
    with WorkerProcess(spec_dict()) as w:
        client_for(w).chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}]
        )
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(60) == 0


def test_engine_class_override():
    args = ["--engine-class", "tests.support.fake_engine:FakeEngine"]
    with WorkerProcess(spec_dict(engine="whatever"), extra_args=args) as w:
        assert w.health()["engine"] == "fake"


# --- JSON routes -----------------------------------------------------------------------------
def test_chat_and_usage(llm):
    r = client_for(llm).chat.completions.create(
        model="anything", messages=[{"role": "user", "content": "hello there"}]
    )
    assert r.choices[0].message.content == "echo: hello there"
    assert r.model == "fake-llm"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_frames_usage_and_done(llm):
    chunks = list(
        client_for(llm).chat.completions.create(
            model="x",
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: a b c"
    assert chunks[-1].usage.completion_tokens == 4
    raw = httpx.post(
        f"{llm.base_url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.endswith("data: [DONE]\n\n")
    assert all(event.startswith("data: ") for event in raw.text.strip().split("\n\n"))


def test_completions(llm):
    r = client_for(llm).completions.create(model="x", prompt="one two", max_tokens=2)
    assert r.choices[0].text == "echo: one" and r.choices[0].finish_reason == "length"


def test_models_lists_the_uid(llm):
    models = client_for(llm).models.list().data
    assert [m.id for m in models] == ["fake-llm"]
    assert models[0].model_dump()["capabilities"] == ["chat", "completions"]


def test_capability_not_served_is_a_400(llm):
    with pytest.raises(openai.BadRequestError) as info:
        client_for(llm).embeddings.create(model="x", input="hi")
    assert info.value.body["code"] == "unsupported_operation"
    r = httpx.post(f"{llm.base_url}/v1/images/generations", json={"prompt": "cat"})
    assert r.status_code == 400 and "does not serve images" in r.json()["error"]["message"]


def test_unknown_path_and_bad_json_in_openai_shape(llm):
    r = httpx.get(f"{llm.base_url}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["message"]
    r = httpx.post(f"{llm.base_url}/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(f"{llm.base_url}/v1/chat/completions", content=b"[1, 2]")
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]


def test_engine_error_status_reaches_the_client(llm):
    r = httpx.post(f"{llm.base_url}/v1/chat/completions", json={"messages": "nope"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "messages"


# --- media routes ----------------------------------------------------------------------------
def test_transcription_multipart(media_worker):
    client = client_for(media_worker)
    text = client.audio.transcriptions.create(
        model="x", file=("a.wav", io.BytesIO(b"\0" * 100)), response_format="text"
    )
    assert text.strip() == "fake transcript of 100 bytes"
    r = client.audio.translations.create(model="x", file=("a.wav", io.BytesIO(b"\0" * 10)))
    assert r.text == "fake translation of 10 bytes"


def test_upload_over_the_limit_is_a_413(media_worker):
    with pytest.raises(openai.APIStatusError) as info:
        client_for(media_worker).audio.transcriptions.create(
            model="x", file=("big.wav", io.BytesIO(b"\0" * 5000))
        )
    assert info.value.status_code == 413
    assert "2000 bytes" in info.value.body["message"]
    # A chunked upload (no Content-Length) is counted as it streams.
    body = b"--b\r\nContent-Disposition: form-data; name=file; filename=x.wav\r\n\r\n"
    body += b"\0" * 5000 + b"\r\n--b--\r\n"
    r = httpx.post(
        f"{media_worker.base_url}/v1/audio/transcriptions",
        content=iter([body[:1000], body[1000:]]),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 413


def test_transcription_needs_a_file(media_worker):
    r = httpx.post(f"{media_worker.base_url}/v1/audio/transcriptions", data={"model": "x"})
    assert r.status_code == 400


def test_images_b64_json(media_worker):
    r = client_for(media_worker).images.generate(model="x", prompt="a cat", n=2)
    assert len(r.data) == 2
    assert all(base64.b64decode(d.b64_json).startswith(PNG_MAGIC) for d in r.data)


def test_images_url_written_under_files_dir_and_signed(media_worker):
    before = time.time()
    r = client_for(media_worker).images.generate(model="x", prompt="a cat", response_format="url")
    url = httpx.URL(r.data[0].url)
    prefix = "http://gw.example:3000/files/images/"
    assert str(url).startswith(prefix)
    name = url.path.rsplit("/", 1)[1]
    assert name.endswith(".png") and len(name) > 30  # unguessable
    assert url.params["sig"] == links.signature(LINK_KEY, name)
    assert before + 600 - 1 <= (links.expires_at(name) or 0) <= time.time() + 600
    assert (Path(media_worker.files_dir) / "images" / name).read_bytes().startswith(PNG_MAGIC)


def test_images_url_refused_without_a_signing_key(tmp_path):
    env = {"MODELPORT_FILES_DIR": str(tmp_path), links.LINK_KEY_ENV: ""}
    spec = spec_dict(uid="fake-img", model_type="image")
    with WorkerProcess(spec, env=env) as w:
        r = httpx.post(
            f"{w.base_url}/v1/images/generations", json={"prompt": "x", "response_format": "url"}
        )
    assert r.status_code == 400
    assert links.LINK_KEY_ENV in r.json()["error"]["message"]


def test_images_bad_response_format(media_worker):
    r = httpx.post(
        f"{media_worker.base_url}/v1/images/generations",
        json={"prompt": "x", "response_format": "gif"},
    )
    assert r.status_code == 400


def test_fake_embeddings_and_rerank_shapes(media_worker):
    client = client_for(media_worker)
    r = client.embeddings.create(model="x", input=["a", "b", "a"], encoding_format="float")
    vectors = [d.embedding for d in r.data]
    assert len(vectors[0]) == 8 and vectors[0] == vectors[2] != vectors[1]
    r = httpx.post(
        f"{media_worker.base_url}/v1/rerank",
        json={"query": "red apple", "documents": ["blue sky", "red apple pie", "apple"]},
    )
    assert [i["index"] for i in r.json()["results"]] == [1, 2, 0]
    assert json.dumps(r.json()["meta"]["tokens"])
