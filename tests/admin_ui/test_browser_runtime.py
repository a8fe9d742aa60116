"""The Models page against the real local runtime: launch the starter chat model (SmolLM2 135M,
GGUF shipped on PyPI) from the catalog, watch it become ready, chat with it in the playground,
read its logs and terminate it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from tests.admin_ui.test_browser import nav, setup_admin, shot
from tests.support.starter_models import SMOLLM2_MISSING, smollm2_gguf

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _skip_reason() -> str | None:
    if importlib.util.find_spec("local_runtime.supervisor") is None:
        return "the local runtime supervisor is not in this checkout"
    if smollm2_gguf() is None:
        return SMOLLM2_MISSING
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed: pip install 'modelport[llama-cpp]'"
    return None


def test_launch_starter_model_and_chat(make_gateway, page: Any, artifacts: Path):
    if reason := _skip_reason():
        pytest.skip(reason)
    gw = make_gateway(runtime_enabled=True)
    setup_admin(page, gw.url)
    nav(page, "Models")
    page.get_by_label("Search").fill("smollm2-135m")
    page.get_by_role("button", name="Filter").click()
    family = page.locator("details#family-smollm2-135m-instruct")
    family.locator("summary").click()
    family.get_by_label("Model UID").fill("smol")
    family.get_by_label("Format").select_option("gguf")
    family.get_by_role("button", name="Launch smollm2-135m-instruct").click()
    page.get_by_text("launching smol").wait_for()
    row = page.locator("#instance-smol")
    row.wait_for()
    shot(page, artifacts, "models-launching")
    page.locator('#instance-smol[data-status="ready"]').wait_for(timeout=240_000)
    assert "llama.cpp" in row.inner_text()
    row.get_by_role("button", name="Logs").click()
    page.locator("pre.logbox").first.wait_for()
    shot(page, artifacts, "models-running")

    nav(page, "Playground")
    page.locator("#chat-model").select_option("smol")
    page.get_by_label("Max tokens").fill("16")
    page.get_by_label("Message").fill("What is the capital of France?")
    page.get_by_role("button", name="Send").click()
    page.locator(".msg.assistant[data-done]").wait_for(timeout=120_000)
    answer = page.locator(".msg.assistant").inner_text()
    assert answer.startswith("assistant: ") and len(answer) > len("assistant: "), answer
    shot(page, artifacts, "playground-local")

    gw.flush_usage()
    nav(page, "Logs")
    assert "smol" in page.locator("table.logs").inner_text()

    nav(page, "Models")
    page.locator("#instance-smol").get_by_role("button", name="Terminate").click()
    page.locator("#instance-smol").wait_for(state="detached")
    assert gw.app.state.services.runtime.instances() == []
    assert re.search(r"No model is running", page.locator("#instances").inner_text())
