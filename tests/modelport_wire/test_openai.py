"""The OpenAI wire format has one definition (modelport_wire.openai), and it did not change.

The error body is OpenAI's `ErrorResponse`: `{"error": Error}` with Error's four keys all present
(openai/openai-openapi openapi.yaml, components.schemas.Error: `required: [type, message, param,
code]`; ErrorResponse: `required: [error]`; lines 38249 and 38286 at commit f85dbe2). The SSE
frames below were produced by the framers this module replaced (gateway.errors.sse_error_event,
local_runtime.sse, litellm_convert.sse) before the move, and must stay byte for byte what clients
and the gateway's stream scanner already read.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from modelport_wire import openai as wire

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "local_runtime", "admin_ui", "modelport_wire")
WIRE = "modelport_wire/openai.py"


def test_error_frames_are_byte_identical_to_the_old_framers() -> None:
    # gateway.errors.sse_error_event(message) and (..., code="upstream_timeout")
    assert wire.error_frame(
        "upstream stream ended before [DONE]", type="upstream_error", code="upstream_error"
    ) == (
        b'data: {"error":{"message":"upstream stream ended before [DONE]",'
        b'"type":"upstream_error","param":null,"code":"upstream_error"}}\n\n'
    )
    assert wire.error_frame('x "q" é', type="upstream_error", code="upstream_timeout") == (
        b'data: {"error":{"message":"x \\"q\\" \xc3\xa9","type":"upstream_error",'
        b'"param":null,"code":"upstream_timeout"}}\n\n'
    )
    # local_runtime.sse.error_frame(message, code=...) and without a code
    assert wire.error_frame("boom", code="generation_failed") == (
        b'data: {"error":{"message":"boom","type":"server_error","param":null,'
        b'"code":"generation_failed"}}\n\n'
    )
    assert wire.error_frame("boom") == (
        b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
    )


def test_data_frames_are_byte_identical_to_the_old_framers() -> None:
    # local_runtime.sse.frame / frame_json, litellm_convert.sse, both [DONE]s
    assert wire.frame(b'{"a":1}') == b'data: {"a":1}\n\n'
    chunk = {"id": "c", "choices": [{"delta": {"content": "é"}}]}
    assert wire.frame_json(chunk) == (
        b'data: {"id":"c","choices":[{"delta":{"content":"\xc3\xa9"}}]}\n\n'
    )
    assert wire.frame_json({"id": "c", "choices": []}) == b'data: {"id":"c","choices":[]}\n\n'
    assert wire.frame_json({"e": np.float32(0.5)}) == b'data: {"e":0.5}\n\n'
    assert wire.DONE == b"data: [DONE]\n\n"
    assert wire.MEDIA_TYPE == "text/event-stream"
    assert wire.HEADERS == {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def test_error_body_is_openais_error_response() -> None:
    body = wire.error_body("no", type="rate_limit_error", code="rate_limit_exceeded")
    assert body == {
        "error": {
            "message": "no",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    schema = wire.ErrorResponse.model_json_schema()
    assert schema["required"] == ["error"]
    assert set(schema["$defs"]["ErrorObject"]["required"]) == {"message", "type", "param", "code"}


def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            out.append((rel, ast.parse(path.read_text(), rel)))
    return out


# (a bare `frame` is also the worker's IPC length framing, so it is not on the list)
FRAMERS = {"error_body", "error_bytes", "error_frame", "frame_json", "sse", "sse_error_event"}
ERROR_KEYS = {"message", "type", "param", "code"}


def test_only_the_wire_module_frames_errors_and_events() -> None:
    """Grep-style, as tests/test_import_direction.py: outside modelport_wire/openai.py no function
    is named like a framer, no bytes literal starts an SSE frame (`b"data: "`; parsing with
    `b"data:"` is fine), and no dict literal spells the error object's four keys by hand."""
    found: list[str] = []
    for rel, tree in _modules():
        if rel == WIRE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in FRAMERS:
                found.append(f"{rel}:{node.lineno} defines {node.name}()")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, bytes)
                and node.value.startswith(b"data: ")
            ):
                found.append(f"{rel}:{node.lineno} frames SSE by hand")
            elif isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if keys >= ERROR_KEYS:
                    found.append(f"{rel}:{node.lineno} builds an OpenAI error body by hand")
    assert found == [], "use modelport_wire.openai instead:\n" + "\n".join(found)
