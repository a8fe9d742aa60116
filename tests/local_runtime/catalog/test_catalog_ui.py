"""The admin UI's catalog (Models page) over plain HTTP: families grouped by type, each marked
"ready offline" (files shipped on PyPI, in the model cache, or a local path) or with the download
it needs, with formats and sizes in its summary."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.admin_ui.helpers import UIClient
from tests.conftest import Gateway
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = pytest.mark.skipif(smollm2_gguf() is None, reason=SMOLLM2_MISSING)


def _summary(html: str, name: str) -> str:
    found = re.search(
        rf'<details class="family" id="family-{re.escape(name)}">(.*?)</summary>', html, re.S
    )
    assert found, f"no family {name} on the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def test_catalog_page_groups_by_type_and_marks_offline(
    make_gateway: Callable[..., Gateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server runs in this process
    home = tmp_path / "home"
    (home / "models" / "Qwen3-Embedding-0.6B" / "pytorch-0_6b").mkdir(parents=True)
    (home / "models" / "Qwen3-Embedding-0.6B" / "pytorch-0_6b" / "config.json").write_text("{}")
    gw = make_gateway(runtime_enabled=True, home=home)
    ui = UIClient(gw.url)
    ui.setup()

    page = ui.get("/ui/models", params={"q": "qwen3"}).text
    headings = re.findall(r'<h3 id="catalog-(\w+)">', page)
    assert headings == ["llm", "embedding", "rerank"]  # in type order, only where something matches
    llm = page.index('id="catalog-llm"')
    embedding = page.index('id="catalog-embedding"')
    assert llm < page.index('id="family-qwen3"') < embedding
    assert embedding < page.index('id="family-Qwen3-Embedding-0.6B"')

    qwen3 = _summary(page, "qwen3")
    assert "download ~1.2 GB, not possible offline" in qwen3
    assert "pytorch, gptq, mlx, gguf, awq" in qwen3 and "0.6-235B" in qwen3
    assert "ready offline" in _summary(page, "Qwen3-Embedding-0.6B")

    assert 'aria-label="Launch qwen3"' in page  # few matches: a launch form in each family

    everything = ui.get("/ui/models").text  # 250+ families: links to a filtered page instead
    assert len(re.findall(r'<h3 id="catalog-', everything)) == 5
    assert 'aria-label="Launch qwen3"' not in everything
    assert '<a href="/ui/models?q=qwen3">Launch qwen3…</a>' in everything

    starters = ui.get("/ui/models", params={"q": "smollm2"}).text
    assert "ready offline" in _summary(starters, "smollm2-135m-instruct")
    assert 'title="ready: gguf 0.135B Q4_1 (pypi)' in starters
    ui.close()
