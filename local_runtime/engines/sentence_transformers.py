"""Text embeddings with sentence-transformers, dynamically batched across requests.

Requests are cut into single texts and merged with other requests' texts by the micro-batcher
(`local_runtime.batching`), so 32 clients sending one sentence each cost about one forward pass
of 32 rather than 32 passes of one. The model runs on the batcher's one thread.

`dimensions`: equal to the model's size is always accepted (FastGPT sends it from its config).
Smaller is accepted only for models launched with `engine_options.matryoshka = true` (trained so
that a prefix of the vector is itself an embedding, e.g. nomic-embed, mxbai, gte-v1.5): the
vector is truncated and, if the model normalises its output, renormalised. For other models a
smaller size would silently give poor vectors, so it is refused with 400.

Token arrays as `input` are refused with 400: the tokenizer of the client's model is unknown,
and sentence-transformers encodes text.

Request checking (`parse_embedding_request`) and response building (`embedding_response`) are
functions of an `EmbeddingInfo` rather than methods, because the worker's HTTP front processes
(`engine_options.http_fronts`, see local_runtime.worker.fronts) run them without the model: both
paths then answer byte for byte alike.

engine_options: max_batch_size (32), max_wait_ms (5), max_queue (4096 texts), matryoshka (false),
torch_threads, max_seq_length, dtype (float16 on CUDA, float32 on CPU), http_fronts (0).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from local_runtime.batching import BatchSettings, MicroBatcher
from local_runtime.engines import base
from local_runtime.engines.base import Engine, EngineError
from local_runtime.spec import ResolvedSpec

MAX_INPUTS = 2048  # OpenAI's own limit per request


def parse_texts(value: Any) -> list[str]:
    """`input` as a list of strings, or a 400 that says what was wrong."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            if len(value) > MAX_INPUTS:
                raise EngineError(
                    f"'input' has {len(value)} items; at most {MAX_INPUTS} per request",
                    code="input",
                )
            return value
        if all(isinstance(item, int) for item in value) or all(
            isinstance(item, list) for item in value
        ):
            raise EngineError(
                "token arrays are not supported as 'input' by this model; send text",
                code="input",
            )
    raise EngineError("'input' must be a string or a non-empty list of strings", code="input")


@dataclass(frozen=True)
class EmbeddingInfo:
    """What checking a request and building its response need to know about the loaded model."""

    uid: str
    dimensions: int
    matryoshka: bool
    normalized: bool


def check_dimensions(value: Any, info: EmbeddingInfo) -> int | None:
    """The size to cut vectors to, None for the model's own; a 400 for sizes it cannot give."""
    if value is None or value == info.dimensions:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise EngineError("'dimensions' must be a positive integer", code="dimensions")
    if value > info.dimensions:
        raise EngineError(
            f"'dimensions' is {value} but {info.uid} gives {info.dimensions}", code="dimensions"
        )
    if not info.matryoshka:
        raise EngineError(
            f"{info.uid} gives {info.dimensions}-dimensional vectors and was not "
            "trained to be truncated; omit 'dimensions' (or launch a Matryoshka model with "
            "engine_options.matryoshka=true)",
            code="dimensions",
        )
    return value


def parse_embedding_request(
    body: dict[str, Any], info: EmbeddingInfo
) -> tuple[list[str], str, int | None]:
    """(texts, encoding_format, dimensions) of an embeddings request, or a 400."""
    texts = parse_texts(body.get("input"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise EngineError(
            f"encoding_format must be 'float' or 'base64', not {encoding!r}",
            code="encoding_format",
        )
    return texts, encoding, check_dimensions(body.get("dimensions"), info)


def embedding_response(
    info: EmbeddingInfo,
    vectors: Iterable[Any],
    counts: Sequence[int],
    encoding: str,
    dimensions: int | None,
) -> dict[str, Any]:
    """The OpenAI body for float32 `vectors` and their token `counts` (orjson writes the arrays)."""
    import numpy as np

    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        if dimensions is not None:
            vector = vector[:dimensions]
            if info.normalized:
                vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        embedding: Any = (
            base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode()
            if encoding == "base64"
            else np.ascontiguousarray(vector, dtype=np.float32)
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = int(sum(counts))
    return {
        "object": "list",
        "data": data,
        "model": info.uid,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def half_precision(options: dict[str, Any], device: str) -> bool:
    """fp16 on CUDA unless `engine_options.dtype` says otherwise; fp32 on CPU (no fast fp16)."""
    dtype = str(options.get("dtype") or ("float16" if device.startswith("cuda") else "float32"))
    if dtype not in ("float16", "float32"):
        raise ValueError(f"engine_options.dtype must be float16 or float32, not {dtype!r}")
    return dtype == "float16"


def load_torch_options(options: dict[str, Any]) -> None:
    if options.get("torch_threads"):
        import torch

        torch.set_num_threads(int(options["torch_threads"]))


class SentenceTransformersEngine(Engine):
    name: ClassVar[str] = "sentence_transformers"
    model_types: ClassVar[frozenset[str]] = frozenset({"embedding"})
    capabilities: ClassVar[frozenset[str]] = frozenset({base.EMBEDDINGS})
    requires: ClassVar[str] = "sentence_transformers"

    def __init__(self, spec: ResolvedSpec) -> None:
        super().__init__(spec)
        self.batch_settings = BatchSettings.from_options(spec.engine_options)
        self.matryoshka = bool(spec.engine_options.get("matryoshka", False))
        self.model: Any = None
        self.info: EmbeddingInfo | None = None  # set once loaded
        self.batcher: MicroBatcher[str, tuple[Any, int]] | None = None

    @classmethod
    def extra(cls) -> str:
        return "embeddings"

    @classmethod
    def match(cls, spec: ResolvedSpec) -> tuple[bool, str]:
        ok, reason = super().match(spec)
        if ok and spec.model_format not in ("pytorch", "safetensors"):
            return False, (
                f"sentence_transformers serves PyTorch/safetensors models, not {spec.model_format}"
            )
        return ok, reason

    def load(self) -> None:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Normalize

        options = self.spec.engine_options
        load_torch_options(options)
        self.model = SentenceTransformer(
            str(self.spec.model_path),
            device=self.spec.device,
            trust_remote_code=self.spec.trust_remote_code,
            local_files_only=True,
        )
        if options.get("max_seq_length"):
            self.model.max_seq_length = int(options["max_seq_length"])
        if half_precision(options, self.spec.device):
            self.model.half()
        # Renamed in sentence-transformers 6; the old name warns there.
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.info = EmbeddingInfo(
            uid=self.spec.uid,
            dimensions=int(dimension() or 0),
            matryoshka=self.matryoshka,
            normalized=any(isinstance(module, Normalize) for module in self.model),
        )
        self.model.encode(["warm up"], show_progress_bar=False)  # first call pays lazy init
        self.batcher = MicroBatcher(
            self._encode_batch, self.batch_settings, name=f"embed-{self.spec.uid}"
        )

    def unload(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.model = None

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"dimensions": self.info.dimensions if self.info else 0}
        if self.batcher is not None:
            status["batching"] = self.batcher.stats()
        return status

    def _encode_batch(self, texts: list[str]) -> list[tuple[Any, int]]:
        """One forward pass; per text its vector and its token count (for usage).

        Tokenizes once and calls the model's modules directly: `encode()` would tokenize again
        (after a tokenizer call for the counts), sort by length and re-split, which costs more
        than the forward pass itself on a GPU.
        """
        import torch

        model = self.model
        features = (
            model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
        )
        counts = features["attention_mask"].sum(dim=1).tolist()
        features = {
            k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()
        }
        with torch.inference_mode():
            vectors = model.forward(features)["sentence_embedding"]
            vectors = vectors.float().cpu().numpy()
        return [(vectors[i], int(counts[i])) for i in range(len(texts))]

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.info is None or self.batcher is None:
            raise EngineError("the model is not loaded", status=503, code="model_not_ready")
        texts, encoding, dimensions = parse_embedding_request(body, self.info)
        results = await self.batcher.submit(texts)
        return embedding_response(
            self.info,
            [vector for vector, _ in results],
            [count for _, count in results],
            encoding,
            dimensions,
        )
