"""Reranking with a sentence-transformers CrossEncoder, batched across requests.

Named "sentence_transformers" like the embedding engine (Xinference users launch rerankers with
that engine name); the registry tells them apart by model type.

Request (Jina/Cohere shape): `{model, query, documents: [str | {"text": str}], top_n?,
return_documents?}`. Every document is scored; results come best first, cut to `top_n` when
given. FastGPT sends neither `top_n` nor `return_documents` and orders documents by their place
in `results`, so all documents must come back sorted. `return_documents` defaults to false
(Cohere, Xinference); each result's `document` is null then, `{"text"}` when true (Xinference's
`DocumentObj`). Usage is in both spellings FastGPT and OpenAI-style clients read:
`meta.tokens.input_tokens` and `usage.prompt_tokens`.

Each (query, document) pair is one item for the micro-batcher, so one request with 100 documents
and ten requests with 10 each all run as full batches.

`parse_rerank` and `rerank_response` are plain functions because the worker's HTTP front
processes (`engine_options.http_fronts`, see local_runtime.worker.fronts) run them without the
model.

engine_options: max_batch_size (32), max_wait_ms (5), max_queue (8192 pairs), max_length,
num_labels (only to load a checkpoint without a classification head: the head is then random),
torch_threads, http_fronts (0).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from local_runtime.batching import BatchSettings, MicroBatcher
from local_runtime.engines import base
from local_runtime.engines.base import Engine, EngineError
from local_runtime.engines.sentence_transformers import load_torch_options
from local_runtime.spec import ResolvedSpec

MAX_DOCUMENTS = 10_000


def parse_rerank(body: dict[str, Any]) -> tuple[str, list[str], int | None, bool]:
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise EngineError("'query' must be a non-empty string", code="query")
    documents = body.get("documents")
    if not isinstance(documents, list):
        raise EngineError("'documents' must be a list of strings", code="documents")
    if len(documents) > MAX_DOCUMENTS:
        raise EngineError(f"at most {MAX_DOCUMENTS} documents per request", code="documents")
    texts: list[str] = []
    for doc in documents:
        if isinstance(doc, str):
            texts.append(doc)
        elif isinstance(doc, dict) and isinstance(doc.get("text"), str):
            texts.append(doc["text"])
        else:
            raise EngineError(
                "each document must be a string or an object with a 'text' string",
                code="documents",
            )
    top_n = body.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise EngineError("'top_n' must be a positive integer", code="top_n")
    return query, texts, top_n, bool(body.get("return_documents", False))


def rerank_response(
    uid: str,
    texts: list[str],
    scores: Sequence[float],
    counts: Sequence[int],
    top_n: int | None,
    return_documents: bool,
) -> dict[str, Any]:
    """Every document's score, best first (cut to `top_n`), with usage in both spellings."""
    order = sorted(range(len(texts)), key=lambda i: -scores[i])
    results: list[dict[str, Any]] = []
    for i in order[:top_n] if top_n else order:
        document = {"text": texts[i]} if return_documents else None
        results.append({"index": i, "relevance_score": float(scores[i]), "document": document})
    tokens = int(sum(counts))
    return {
        "id": str(uuid.uuid4()),
        "model": uid,
        "results": results,
        "meta": {"tokens": {"input_tokens": tokens, "output_tokens": 0}},
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class CrossEncoderEngine(Engine):
    name: ClassVar[str] = "sentence_transformers"
    model_types: ClassVar[frozenset[str]] = frozenset({"rerank"})
    capabilities: ClassVar[frozenset[str]] = frozenset({base.RERANK})
    requires: ClassVar[str] = "sentence_transformers"

    def __init__(self, spec: ResolvedSpec) -> None:
        super().__init__(spec)
        self.batch_settings = BatchSettings.from_options(spec.engine_options, max_queue=8192)
        self.model: Any = None
        self.batcher: MicroBatcher[tuple[str, str], tuple[float, int]] | None = None

    @classmethod
    def extra(cls) -> str:
        return "embeddings"

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        ok, reason = super().match(spec)
        if ok and spec.model_format not in ("pytorch", "safetensors"):
            return False, f"CrossEncoder serves PyTorch/safetensors models, not {spec.model_format}"
        return ok, reason

    def load(self) -> None:
        from sentence_transformers import CrossEncoder

        options = self.spec.engine_options
        load_torch_options(options)
        kwargs: dict[str, Any] = {}
        for key in ("num_labels", "max_length"):
            if options.get(key):
                kwargs[key] = int(options[key])
        self.model = CrossEncoder(
            str(self.spec.model_path),
            device=self.spec.device,
            trust_remote_code=self.spec.trust_remote_code,
            local_files_only=True,
            **kwargs,
        )
        self.model.predict([("warm", "up")], show_progress_bar=False)
        self.batcher = MicroBatcher(
            self._score_batch, self.batch_settings, name=f"rerank-{self.spec.uid}"
        )

    def unload(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.model = None

    def status(self) -> dict[str, Any]:
        return {"batching": self.batcher.stats()} if self.batcher is not None else {}

    def _score_batch(self, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
        """One forward pass; per pair its relevance score and its token count (for usage)."""
        ids = self.model.tokenizer(
            [q for q, _ in pairs],
            [d for _, d in pairs],
            truncation=True,
            max_length=self.model.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        scores = self.model.predict(
            pairs, batch_size=len(pairs), convert_to_numpy=True, show_progress_bar=False
        )
        return [(float(scores[i]), len(ids[i])) for i in range(len(pairs))]

    async def rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        query, texts, top_n, return_documents = parse_rerank(body)
        if self.batcher is None:
            raise EngineError("the model is not loaded", status=503, code="model_not_ready")
        scored = await self.batcher.submit([(query, text) for text in texts])
        return rerank_response(
            self.spec.uid,
            texts,
            [score for score, _ in scored],
            [count for _, count in scored],
            top_n,
            return_documents,
        )
