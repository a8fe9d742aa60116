"""Write modelport catalog YAML from the facts in Xinference's built-in catalog.

Xinference (github.com/xorbitsai/inference) publishes, per model family, the hub ids, sizes, formats,
quantizations and GGUF file names its users launch by name. Those are facts about public models;
this script turns them into modelport's own schema (local_runtime/catalog/schema.py) once, so
the names, size strings and quantization spellings are the ones Xinference users type. The YAML it writes is
the source afterwards: review it, edit it by hand, commit it; re-run only to pick up new families.

    python scripts/catalog_from_xinference.py /path/to/inference-checkout config/catalog \
        [--commit SHA] [--retired OLD_LLM_FAMILY_JSON --retired-commit SHA]

--commit names the Xinference commit the headers cite.
--retired reads an older llm_family.json (v1 layout, e.g. xorbitsai/inference@1598c238f4e4 of
2025-03) for the RETIRED families users still launch by name after Xinference dropped them.

What changes on the way: sizes become numbers (Xinference's "0_5" is 0.5), `ggufv2` is `gguf`,
specs that differ only in the size are folded into one spec with `{size}`, GGUF quantizations are
reordered so Q4_K_M (the usual default) comes first, and formats no modelport engine reads (fp8,
bnb, fp4) are left out. Families already defined in another catalog file are skipped, so
hand-written entries win. Abilities outside modelport's set (hybrid, audio, omni) are dropped, and
families whose point is audio input (omni, audio-only chat) are skipped: no engine here takes audio
into chat.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import yaml

FORMATS = {"pytorch": "pytorch", "ggufv2": "gguf", "awq": "awq", "gptq": "gptq", "mlx": "mlx"}
LLM_ABILITIES = ("chat", "generate", "tools", "vision", "reasoning")
# Chat families whose prompt format lives in the repo's Python code, not a Jinja template.
REMOTE_CODE_TEMPLATES = {"qwen-chat", "baichuan-2-chat", "telechat", "cogagent", "deepseek-vl2"}
# Text-only embedding models a sentence-transformers engine serves (multimodal ones need more).
EMBEDDINGS = (
    "bge-large-en", "bge-base-en", "gte-large", "gte-base", "e5-large-v2", "bge-large-zh",
    "bge-base-zh", "multilingual-e5-large", "bge-small-zh", "bge-small-zh-v1.5",
    "bge-base-zh-v1.5", "bge-small-en-v1.5", "bge-large-en-v1.5", "jina-embeddings-v2-small-en",
    "jina-embeddings-v2-base-en", "jina-embeddings-v2-base-zh", "text2vec-large-chinese",
    "text2vec-base-chinese", "text2vec-base-chinese-paraphrase", "text2vec-base-multilingual",
    "bce-embedding-base_v1", "m3e-small", "m3e-base", "m3e-large", "gte-Qwen2",
    "Qwen3-Embedding-0.6B", "Qwen3-Embedding-4B", "Qwen3-Embedding-8B", "jina-embeddings-v3",
)  # fmt: skip
# Families Xinference dropped from its catalog in 2025 whose names its users still type.
RETIRED = (
    "gemma-2-it", "gemma-it", "internlm2.5-chat", "internlm2.5-chat-1m", "internlm2-chat",
    "yi-coder", "yi-coder-chat", "c4ai-command-r-v01", "Starling-LM", "deepseek-v2",
)  # fmt: skip
HEADER = """\
# {what}, written by scripts/catalog_from_xinference.py from the facts in Xinference's
# {source} (xorbitsai/inference@{commit}): names, sizes, formats, quantizations and
# hub ids as Xinference users launch them. This YAML is the source now: edit it here.
# Schema: local_runtime/catalog/schema.py (Family, ModelSpec).
"""


def size_of(value: Any) -> float | int:
    size = float(str(value).replace("_", "."))
    return int(size) if size.is_integer() else size


def label(size: float) -> str:
    return f"{size:g}"


def templated(text: str | None, size: float) -> str | None:
    """Replace the size in a hub id or file name by `{size}` where it stands as `-7B`/`_7b`."""
    if text is None:
        return None
    pattern = r"(?<=[-_/])" + re.escape(label(size)) + r"(?=[Bb](?![a-z]))"
    return re.sub(pattern, "{size}", text)


def quant_templated(model_id: str | None, quants: list[str]) -> str | None:
    """`org/X-GPTQ-Int4` -> `org/X-GPTQ-{quantization}` for a one-quantization spec."""
    if model_id is None or len(quants) != 1 or quants[0] == "none":
        return model_id
    pattern = r"(?<=[-_/])" + re.escape(quants[0]) + r"(?=$|[-_.])"
    return re.sub(pattern, "{quantization}", model_id)


def hub_id(model_id: str | None) -> str | None:
    """An `org/name` id, or None for a malformed one (a few Xinference entries carry two orgs)."""
    if model_id is None or model_id.count("/") == 1:
        return model_id
    print(f"skipped malformed hub id {model_id!r}")
    return None


def gguf_order(quants: list[str]) -> list[str]:
    first = [q for q in quants if q.lower() == "q4_k_m"]
    return first + [q for q in quants if q.lower() != "q4_k_m"]


def v1_to_v2(spec: dict[str, Any]) -> dict[str, Any]:
    """A v1 spec (ids at the top, Hugging Face) in the v2 `model_src` shape."""
    if "model_src" in spec:
        return spec
    keys = ("model_id", "quantizations", "model_file_name_template",
            "model_file_name_split_template", "quantization_parts")  # fmt: skip
    src = {key: spec[key] for key in keys if key in spec}
    return {**spec, "model_src": {"huggingface": src}}


def convert_spec(spec: dict[str, Any]) -> dict[str, Any] | None:
    spec = v1_to_v2(spec)
    fmt = FORMATS.get(spec["model_format"])
    src = spec.get("model_src") or {}
    hf, ms = src.get("huggingface") or {}, src.get("modelscope") or {}
    main = hf or ms
    if fmt is None or not main.get("model_id"):
        return None
    size = size_of(spec["model_size_in_billions"])
    quants = [
        str(q or "none").replace("None", "none") for q in main.get("quantizations") or ["none"]
    ]
    if fmt == "gguf" and not main.get("model_file_name_template"):
        # a few huge split-only GGUF entries list their real quantizations only under the parts
        parts = main.get("quantization_parts") or {}
        if not (parts and main.get("model_file_name_split_template")):
            return None
        quants = list(parts)
        main = {**main, "model_file_name_template": main["model_file_name_split_template"]}
    split = main.get("model_file_name_split_template")
    if fmt == "gguf" and split and not split.endswith(".gguf"):
        # parts cut with `split` (`.gguf.a`, `.gguf.b`) must be joined by hand: llama.cpp cannot
        # open them, so those quantizations are left out
        quants = [q for q in quants if q not in (main.get("quantization_parts") or {})]
        main = {k: v for k, v in main.items() if k not in ("quantization_parts",)}
        main["model_file_name_split_template"] = None
        if not quants:
            return None
    out: dict[str, Any] = {
        "format": fmt,
        "size_in_billions": size,
        "quantizations": gguf_order(quants) if fmt == "gguf" else quants,
        "huggingface": quant_templated(templated(hub_id(hf.get("model_id")), size), quants),
        "modelscope": quant_templated(templated(hub_id(ms.get("model_id")), size), quants),
        "file_template": templated(main.get("model_file_name_template"), size),
        "file_split_template": templated(main.get("model_file_name_split_template"), size),
        "quantization_parts": {
            q: parts for q, parts in (main.get("quantization_parts") or {}).items() if q in quants
        }
        or None,
    }
    if not (out["huggingface"] or out["modelscope"]):
        return None
    return {key: value for key, value in out.items() if value is not None}


def prefer_huggingface(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop a ModelScope-only spec when a Hugging Face one offers the same choice."""
    on_hf = {
        (s["format"], s["size_in_billions"], q) for s in specs if "huggingface" in s
        for q in s["quantizations"]
    }  # fmt: skip
    return [
        s
        for s in specs
        if "huggingface" in s
        or not all((s["format"], s["size_in_billions"], q) in on_hf for q in s["quantizations"])
    ]


def fold_quantizations(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Specs of one size equal but for a `{quantization}` in the hub id become one spec."""
    groups: dict[str, dict[str, Any]] = {}
    for spec in specs:
        rest = {k: v for k, v in spec.items() if k != "quantizations"}
        templ = "{quantization}" in str(spec.get("huggingface", spec.get("modelscope", "")))
        key = json.dumps(rest if templ else spec, sort_keys=True)
        if key in groups:
            groups[key]["quantizations"] += spec["quantizations"]
        else:
            groups[key] = {**spec, "quantizations": list(spec["quantizations"])}
    return list(groups.values())


def fold(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Specs equal but for their size become one spec listing the sizes."""
    specs = fold_quantizations(prefer_huggingface(specs))
    groups: dict[str, dict[str, Any]] = {}
    for spec in specs:
        rest = {k: v for k, v in spec.items() if k != "size_in_billions"}
        templ = any("{size}" in str(v) for v in rest.values())
        key = json.dumps(rest, sort_keys=True) if templ else json.dumps(spec, sort_keys=True)
        if key in groups:
            groups[key]["size_in_billions"].append(spec["size_in_billions"])
        else:
            groups[key] = {"format": spec["format"], "size_in_billions": [spec["size_in_billions"]]}
            groups[key].update({k: v for k, v in rest.items() if k != "format"})
    result = []
    for spec in groups.values():
        sizes = sorted(set(spec["size_in_billions"]))
        spec["size_in_billions"] = sizes[0] if len(sizes) == 1 else sizes
        result.append(spec)
    return result


def describe(name: str, specs: list[dict[str, Any]], abilities: list[str]) -> str:
    sizes = sorted({s for spec in specs for s in _sizes(spec)})
    span = f"{label(sizes[0])}B" if len(sizes) == 1 else f"{label(sizes[0])}B-{label(sizes[-1])}B"
    org = next((s["huggingface"].split("/")[0] for s in specs if s.get("huggingface")), "")
    what = "chat" if "chat" in abilities else "base (text completion)"
    extras = [a for a in ("tools", "vision", "reasoning") if a in abilities]
    more = f" with {', '.join(extras)}" if extras else ""
    return f"{name}: {what} models{more}, {span}" + (f" ({org} on Hugging Face)." if org else ".")


def _sizes(spec: dict[str, Any]) -> list[float]:
    value = spec["size_in_billions"]
    return value if isinstance(value, list) else [value]


def llm_family(data: dict[str, Any]) -> dict[str, Any] | None:
    raw = set(data.get("model_ability") or [])
    if "omni" in raw or ("audio" in raw and "vision" not in raw):
        return None  # audio-in chat models (gemma-4 also reads images and text: it stays)
    abilities = [a for a in LLM_ABILITIES if a in raw]
    specs = [s for s in (convert_spec(spec) for spec in data["model_specs"]) if s]
    if not specs or not {"chat", "generate"} & set(abilities):
        return None
    specs = fold(specs)
    chat = "chat" in abilities
    template = (
        "remote_code" if data["model_name"] in REMOTE_CODE_TEMPLATES else "tokenizer"
    ) if chat else "none"  # fmt: skip
    return {
        "name": data["model_name"],
        "type": "llm",
        "abilities": abilities,
        "context_length": data.get("context_length"),
        "chat_template": template,
        "languages": data.get("model_lang") or [],
        "description": describe(data["model_name"], specs, abilities),
        "specs": specs,
    }


def embedding_family(data: dict[str, Any]) -> dict[str, Any]:
    specs = []
    for spec in data["model_specs"]:
        if spec["model_format"] != "pytorch":
            continue  # GGUF embeddings: no modelport engine serves them
        src = spec["model_src"]
        entry: dict[str, Any] = {"format": "pytorch"}
        sized = re.search(r"-(\d+(?:\.\d+)?)B$", data["model_name"])  # Qwen3-Embedding-0.6B
        if sized:
            entry["size_in_billions"] = size_of(sized.group(1))
        entry["huggingface"] = src["huggingface"]["model_id"]
        if src.get("modelscope", {}).get("model_id"):
            entry["modelscope"] = src["modelscope"]["model_id"]
        specs.append(entry)
    name = data["model_name"]
    return {
        "name": name,
        "type": "embedding",
        "abilities": ["embeddings"],
        "dimensions": data["dimensions"],
        "max_tokens": data["max_tokens"],
        "languages": data.get("language") or [],
        "description": f"{name}: text embedding, {data['dimensions']} dimensions, "
        f"up to {data['max_tokens']} tokens ({specs[0]['huggingface']}).",
        "specs": specs,
    }


def taken_names(out_dir: Path, skip: set[str]) -> set[str]:
    names: set[str] = set()
    for path in out_dir.glob("*.yaml"):
        if path.name in skip:
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for family in doc.get("families") or []:
            names.add(str(family["name"]).lower())
            names.update(str(a).lower() for a in family.get("aliases") or [])
    return names


class _Dumper(yaml.SafeDumper):
    """Lists of plain values (sizes, quantizations, abilities) on one line."""


def _list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _list)


def write(path: Path, header: str, families: list[dict[str, Any]]) -> None:
    body = yaml.dump(
        {"families": families}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    ).replace("\n- name:", "\n\n- name:")
    path.write_text(header + body, encoding="utf-8")
    print(f"{path}: {len(families)} families")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkout", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--commit", default="unknown", help="the checkout's commit")
    parser.add_argument("--retired", type=Path)
    parser.add_argument("--retired-commit", default="unknown")
    args = parser.parse_args()
    commit = args.commit
    model_dir = args.checkout / "xinference" / "model"
    outputs = {"xinference_llm.yaml", "xinference_llm_retired.yaml", "xinference_embedding.yaml"}
    taken = taken_names(args.out_dir, outputs)

    llm = json.loads((model_dir / "llm" / "llm_family.json").read_text(encoding="utf-8"))
    families = [f for f in (llm_family(d) for d in llm) if f and f["name"].lower() not in taken]
    write(
        args.out_dir / "xinference_llm.yaml",
        HEADER.format(what="LLM families", source="llm/llm_family.json", commit=commit),
        families,
    )
    taken |= {f["name"].lower() for f in families}
    if args.retired:
        old = json.loads(args.retired.read_text(encoding="utf-8"))
        kept = [llm_family(d) for d in old if d["model_name"] in RETIRED]
        write(
            args.out_dir / "xinference_llm_retired.yaml",
            HEADER.format(
                what="LLM families Xinference has since dropped",
                source="llm/llm_family.json",
                commit=args.retired_commit,
            ),
            [f for f in kept if f and f["name"].lower() not in taken],
        )
    emb = json.loads((model_dir / "embedding" / "model_spec.json").read_text(encoding="utf-8"))
    chosen = [embedding_family(d) for d in emb if d["model_name"] in EMBEDDINGS]
    write(
        args.out_dir / "xinference_embedding.yaml",
        HEADER.format(what="Embedding families", source="embedding/model_spec.json", commit=commit),
        [f for f in chosen if f["name"].lower() not in taken],
    )


if __name__ == "__main__":
    main()
