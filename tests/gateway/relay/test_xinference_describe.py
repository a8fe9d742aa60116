"""Channel models described the way Xinference describes its own, checked with the official
`xinference-client` (4.1.0).

`RESTfulClient.get_model(uid)` reads `GET /v1/models/{uid}` and picks its handle from
`desc["model_type"]` ("LLM", "embedding", "rerank", "audio", "image") and, for LLMs,
`desc["model_ability"]` (xinference_client/client/restful/restful_client.py `get_model`); a
description without them raised KeyError, which is also how Dify's Xinference credential check
failed. Rerank answers follow Xinference's `Rerank` type: an `id`, and each result's `document`
null unless `return_documents` (xinference_client/types.py `Rerank`, `DocumentObj`; the server's
xinference/model/rerank/sentence_transformers/core.py `rerank`).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from xinference_client import RESTfulClient
from xinference_client.client.restful.restful_client import (
    RESTfulAudioModelHandle,
    RESTfulChatModelHandle,
    RESTfulEmbeddingModelHandle,
    RESTfulImageModelHandle,
    RESTfulRerankModelHandle,
)

from tests.conftest import Gateway
from tests.support.fake_openai import FakeOpenAI

MODELS = "gpt-4o-mini,text-embedding-3-small,bge-reranker-v2-m3,whisper-1,dall-e-3,my-ranker"


@pytest.fixture
def gw(make_gateway: Callable[..., Gateway], fake_upstream: FakeOpenAI) -> Gateway:
    gateway = make_gateway(runtime_enabled=True)  # serves /v1/cluster/auth, as Xinference does
    gateway.add_channel(
        name="cloud", base_url=fake_upstream.url, models=MODELS, model_types={"my-ranker": "rerank"}
    )
    return gateway


def test_get_model_returns_the_handle_of_each_kind(gw: Gateway) -> None:
    client = RESTfulClient(gw.url, api_key=gw.create_token())
    handles = {m: type(client.get_model(m)) for m in MODELS.split(",")}
    assert handles == {
        "gpt-4o-mini": RESTfulChatModelHandle,
        "text-embedding-3-small": RESTfulEmbeddingModelHandle,
        "bge-reranker-v2-m3": RESTfulRerankModelHandle,
        "whisper-1": RESTfulAudioModelHandle,
        "dall-e-3": RESTfulImageModelHandle,
        "my-ranker": RESTfulRerankModelHandle,
    }
    desc = client.describe_model("gpt-4o-mini")
    assert desc["model_type"] == "LLM" and desc["model_ability"] == ["chat"]
    assert desc["model_name"] == "gpt-4o-mini" and desc["context_length"] == 128000
    assert client.describe_model("whisper-1")["model_ability"] == ["audio2text"]
    listed = client.list_models()
    assert listed["text-embedding-3-small"]["model_type"] == "embedding"

    chat = client.get_model("gpt-4o-mini")
    assert isinstance(chat, RESTfulChatModelHandle)
    reply = chat.chat(messages=[{"role": "user", "content": "hi"}])
    assert reply["choices"][0]["message"]["content"]
    embedder = client.get_model("text-embedding-3-small")
    assert isinstance(embedder, RESTfulEmbeddingModelHandle)
    assert embedder.create_embedding("hello")["data"][0]["embedding"]


def test_rerank_answers_carry_id_and_document(gw: Gateway) -> None:
    client = RESTfulClient(gw.url, api_key=gw.create_token())
    ranker = client.get_model("bge-reranker-v2-m3")
    assert isinstance(ranker, RESTfulRerankModelHandle)
    docs = ["red apples", "blue sky", "red wine"]
    plain = ranker.rerank(docs, "red")
    assert plain["id"] and [r["document"] for r in plain["results"]] == [None, None, None]
    asked = ranker.rerank(docs, "red", return_documents=True)
    assert all(r["document"] == {"text": docs[r["index"]]} for r in asked["results"])
