"""Request parsing and response shaping for engines that generate text token by token in Python.

Split from the transformers engine so the OpenAI-facing rules (messages, what a chunk looks like,
stop strings across pieces) live apart from the torch plumbing, and can be tested without a model;
the sampling fields are in `transformers_sampling`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from local_runtime.engines.base import EngineError
from local_runtime.engines.toolcalls import ToolCall, template_tool_calls


def chat_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI messages as chat templates read them: text content, and the tool fields.

    An assistant's `tool_calls` keep their shape with `arguments` as an object
    (`toolcalls.template_tool_calls`); a tool result keeps `tool_call_id` and `name`.
    """
    if not isinstance(messages, list) or not messages:
        raise EngineError("'messages' must be a non-empty list", code="messages")
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise EngineError(f"messages[{i}] needs a 'role'", code="messages")
        item: dict[str, Any] = {"role": msg["role"], "content": _text_content(msg, i)}
        for key in ("name", "tool_call_id"):
            if isinstance(msg.get(key), str):
                item[key] = msg[key]
        if msg.get("tool_calls"):
            item["tool_calls"] = template_tool_calls(msg["tool_calls"], f"messages[{i}]")
        out.append(item)
    return out


def _text_content(msg: dict[str, Any], i: int) -> str:
    content = msg.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise EngineError(f"messages[{i}].content must be text", code="messages")
    parts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise EngineError(
                f"messages[{i}]: this model reads text only; got a "
                f"{part.get('type') if isinstance(part, dict) else type(part).__name__} "
                "part",
                code="messages",
            )
        parts.append(str(part.get("text", "")))
    return "".join(parts)


class StopScanner:
    """Finds stop strings in text arriving in pieces, holding back what might begin one.

    feed() returns the text that is safe to emit now and whether a stop string was reached (the
    stop string itself is never emitted, as in OpenAI's API).
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return buf[: min(hits)]
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held


class TextDelta:
    """Turns token ids arriving one by one into the text each adds, as vLLM's detokenizer does.

    Decoding one token alone is wrong for byte-level and SentencePiece vocabularies (a character
    split over two tokens, a leading space that depends on the previous token), and decoding the
    whole sequence at every token costs O(n^2). So each step decodes a short window: the tokens
    since the last emitted piece plus the new one, and emits what the new one added. Text ending in
    an incomplete UTF-8 character waits for the next token, but never for more than a character's
    worth of tokens: a model that makes invalid bytes must not stall its stream.
    """

    MAX_HELD = 4  # bytes in the longest UTF-8 character

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # window start: context for the next decode
        self._read = 0  # tokens whose text has been emitted

    def _text(self, start: int, end: int | None = None) -> str:
        return str(self._tokenizer.decode(self._ids[start:end], skip_special_tokens=True))

    def push(self, token: int) -> str:
        self._ids.append(token)
        before = self._text(self._prefix, self._read)
        after = self._text(self._prefix)
        held = len(self._ids) - self._read
        if len(after) <= len(before) or (after.endswith("\ufffd") and held < self.MAX_HELD):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]

    def flush(self) -> str:
        """What is still held back (an incomplete character at the very end), at the end."""
        rest = self._text(self._prefix)[len(self._text(self._prefix, self._read)) :]
        self._prefix = self._read = len(self._ids)
        return rest


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass
class Reply:
    """Builds OpenAI chat.completion / text_completion bodies and chunks for one request."""

    model: str
    chat: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def _head(self, chunk: bool) -> dict[str, Any]:
        if self.chat:
            obj = "chat.completion.chunk" if chunk else "chat.completion"
            rid = f"chatcmpl-{self.id}"
        else:
            obj, rid = "text_completion", f"cmpl-{self.id}"
        return {"id": rid, "object": obj, "created": self.created, "model": self.model}

    def full(
        self, text: str, finish: str, use: dict[str, int], calls: list[ToolCall] | None = None
    ) -> dict[str, Any]:
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if calls:
                message["content"] = text or None
                message["tool_calls"] = [call.message() for call in calls]
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {**self._head(False), "choices": [choice], "usage": use}

    def chunk(
        self,
        text: str | None,
        finish: str | None,
        *,
        first: bool = False,
        tool_call: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            if tool_call is not None:
                delta["tool_calls"] = [tool_call]
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish}
        choice["logprobs"] = None
        return {**self._head(True), "choices": [choice]}

    def usage_chunk(self, use: dict[str, int]) -> dict[str, Any]:
        return {**self._head(True), "choices": [], "usage": use}
