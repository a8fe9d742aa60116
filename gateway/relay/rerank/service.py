"""The rerank answer in Xinference's shape, whatever upstream produced it.

Xinference answers `{id, results: [{index, relevance_score, document}], meta}` with `document`
null unless `return_documents` (xorbitsai/inference xinference/types.py `Rerank`, `DocumentObj`;
xinference/model/rerank/sentence_transformers/core.py `rerank`: `document=None` when not asked,
`Rerank(id=str(uuid.uuid1()), ...)`). Jina- and Cohere-style upstreams leave `document` out or
send it as a bare string, and some send no `id`: clients written for Xinference (Dify's provider,
`xinference-client`) index both. Only what is missing is filled in; the rest passes through.
"""

from __future__ import annotations

import uuid
from typing import Any

from gateway.relay.rerank.protocol import RerankRequest


def _text(doc: str | dict[str, Any]) -> str:
    return doc if isinstance(doc, str) else str(doc.get("text", ""))


def _document(item: dict[str, Any], body: RerankRequest) -> dict[str, Any] | None:
    """`{"text"}` when the caller asked for documents, else null (as Xinference answers)."""
    if not body.return_documents:
        return None
    given = item.get("document")
    if isinstance(given, str):
        return {"text": given}
    if isinstance(given, dict):
        return given
    index = item.get("index")
    if isinstance(index, int) and 0 <= index < len(body.documents):
        return {"text": _text(body.documents[index])}
    return None


def xinference_shape(obj: dict[str, Any], body: RerankRequest) -> bool:
    """Set the answer's `id` and every result's `document`; True when that changed it (nothing
    changes for a body that is not a rerank answer, which then passes on as it came)."""
    results = obj.get("results")
    if not isinstance(results, list):
        return False
    changed = False
    if not obj.get("id"):
        obj["id"] = str(uuid.uuid4())
        changed = True
    for item in results:
        if not isinstance(item, dict):
            continue
        document = _document(item, body)
        if "document" not in item or item["document"] != document:
            item["document"] = document
            changed = True
    return changed
