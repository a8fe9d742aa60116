"""Every /v1 surface through the gateway with the official openai client."""

from __future__ import annotations

import httpx

from tests.support.speech import silent_wav


def _setup(gateway, fake, models="m"):
    gateway.add_channel(name="up", base_url=fake.url, models=models, key="sk-up")
    return gateway.openai(gateway.create_token(name="surf"))


def test_completions(gateway, fake_upstream):
    client = _setup(gateway, fake_upstream)
    r = client.completions.create(model="m", prompt="The capital of France is", max_tokens=5)
    assert r.choices[0].text == " Paris."
    assert r.usage.total_tokens == 7


def test_embeddings_single_list_and_fastgpt_shape(gateway, fake_upstream):
    client = _setup(gateway, fake_upstream)
    r = client.embeddings.create(model="m", input=["a", "bbb"], encoding_format="float")
    assert [d.embedding[0] for d in r.data] == [1.0, 3.0]
    # FastGPT sends no encoding_format, and `dimensions` from its defaultConfig
    raw = httpx.post(
        f"{gateway.url}/v1/embeddings",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={"model": "m", "input": ["x"], "dimensions": 3},
    )
    assert raw.status_code == 200 and raw.json()["usage"]["total_tokens"] == 3
    assert fake_upstream.requests[-1].body == {"model": "m", "input": ["x"], "dimensions": 3}


def test_rerank_fastgpt_shape(gateway, fake_upstream):
    client = _setup(gateway, fake_upstream)
    r = httpx.post(
        f"{gateway.url}/v1/rerank",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={
            "model": "m",
            "query": "red apple",
            "documents": ["a blue car", "a red apple", "an apple"],
        },
    )
    assert r.status_code == 200
    assert [x["index"] for x in r.json()["results"]] == [1, 2, 0]
    r = httpx.post(
        f"{gateway.url}/v1/rerank",
        headers={"Authorization": f"Bearer {client.api_key}"},
        json={
            "model": "m",
            "query": "red apple",
            "documents": ["x", "red"],
            "top_n": 1,
            "return_documents": True,
        },
    )
    assert r.json()["results"] == [
        {"index": 1, "relevance_score": 1 / 3, "document": {"text": "red"}}
    ]


def test_transcription_upload_is_streamed_through_with_mapping(gateway, fake_upstream):
    gateway.add_channel(
        name="up",
        base_url=fake_upstream.url,
        models="whisper-1",
        model_mapping='{"whisper-1": "whisper-large-v3"}',
    )
    client = gateway.openai(gateway.create_token())
    audio = silent_wav(3.0)
    r = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio, "audio/wav"))
    assert r.text == f"transcribed {len(audio)} bytes"
    rec = fake_upstream.requests[-1]
    assert rec.form["model"] == "whisper-large-v3" and rec.file_bytes == len(audio)
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="text"
    )
    assert text.strip() == f"transcribed {len(audio)} bytes"
    r = client.audio.translations.create(model="whisper-1", file=("a.wav", audio, "audio/wav"))
    assert r.text.startswith("transcribed")


def test_image_generation(gateway, fake_upstream):
    client = _setup(gateway, fake_upstream)
    r = client.images.generate(
        model="m", prompt="a cat", n=2, size="256x256", response_format="b64_json"
    )
    assert len(r.data) == 2 and r.data[0].b64_json


def test_models_lists_only_what_the_token_may_use(gateway, fake_upstream):
    gateway.add_channel(name="up", base_url=fake_upstream.url, models="a,b,c")
    all_models = gateway.openai(gateway.create_token())
    assert sorted(m.id for m in all_models.models.list()) == ["a", "b", "c"]
    limited = gateway.openai(gateway.create_token(models="b"))
    assert [m.id for m in limited.models.list()] == ["b"]
    assert limited.models.retrieve("b").id == "b"
