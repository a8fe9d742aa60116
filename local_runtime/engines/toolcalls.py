"""OpenAI tool calls for engines that decode text in Python: read the request's `tools`, find the
calls in what the model writes, and shape them as OpenAI `tool_calls`.

Engines that front a server with its own parser (llama.cpp's llama-server with jinja, vLLM) get
`tool_calls` from it; this module serves the ones that only have text (transformers), and gives
llama.cpp what it lacks: the JSON schema of a forced call (`ToolRequest.call_schema`) and the
call read back from the constrained answer (`ToolRequest.forced_call`).

Formats understood, the two that open chat models are trained on:
- Hermes style, used by Qwen2.5/Qwen3, Hermes, many fine-tunes:
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one or several, after some text or not;
- a bare JSON object, or list of objects, `{"name": ..., "arguments" | "parameters": ...}` that is the
  whole answer (Llama 3.1/3.2 JSON tool calling; Mistral's `[TOOL_CALLS][...]` once its special
  token is stripped).

Why it works this way:
- One incremental parser serves streaming and non-streaming (`split` feeds the whole text at
  once), so both return the same calls and the same content.
- While streaming, text that may begin a `<tool_call>` tag is held back, as stop strings are, and
  a call goes out once its closing tag has come and its JSON parsed: a client sees a whole call or
  the raw text, never half of one. A call is sent as two deltas, name then arguments, in OpenAI's
  streaming shape.
- A call to a function the request did not offer, or whose JSON does not parse, is given back as
  text (content), tags and all: the model's output is never dropped and never fails the request.
  Whitespace around a call that parsed is formatting and goes.
- A bare call can only be told from a JSON answer at the end, so an answer that starts with `{` or
  `[` is held whole (with tools offered, a JSON answer streams in one piece at the end).
- `tool_choice` "none" turns parsing off (the tools are still shown to the template, as vLLM
  does); "auto" parses. "required" and a named function are enforced by writing the start of the
  call for the model (`ToolRequest.opening`, appended to the prompt): the model only continues a
  call it did not choose to open. Named: the name is written too, so only the arguments are the
  model's; "required": the model picks the name. Its tokens are not masked (no grammar), so a
  model can still write a call that does not parse; that comes back as text, the opening with it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from local_runtime.engines.base import EngineError

OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def message(self) -> dict[str, Any]:
        """The entry of a chat.completion's `message.tool_calls`."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def deltas(self, index: int) -> list[dict[str, Any]]:
        """The `delta.tool_calls` entries of two stream chunks: id and name, then the arguments."""
        head = {
            "index": index,
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": ""},
        }
        return [head, {"index": index, "function": {"arguments": self.arguments}}]


Piece = str | ToolCall


@dataclass(frozen=True)
class ToolRequest:
    """A request's `tools` and `tool_choice`, checked."""

    tools: list[dict[str, Any]]
    choice: str | dict[str, Any] | None

    @property
    def forces(self) -> bool:
        """The choice asks for a call ("required" or a named function), not leaves it open."""
        return self.choice == "required" or isinstance(self.choice, dict)

    def opening(self, hermes: bool) -> str:
        """The start of a call to write for the model: what a forcing `tool_choice` asks for.

        `hermes`: the chat template writes calls in `<tool_call>` tags (else bare JSON calls).
        Empty for "none", "auto" and no choice. Key order and spacing are those of the
        Hermes/Qwen templates' own calls (`{"name": ..., "arguments": ...}`).
        """
        if self.choice == "required":
            call = '{"name": "'
        elif isinstance(self.choice, dict):
            name = json.dumps(self.choice["function"]["name"], ensure_ascii=False)
            call = f'{{"name": {name}, "arguments": '
        else:
            return ""
        return f"{OPEN}\n{call}" if hermes else call

    def call_schema(self) -> dict[str, Any]:
        """The JSON schema of what a forcing choice asks for, for engines that constrain output
        with a grammar (llama.cpp): a named function's arguments; for "required", an object
        naming one of the offered functions with its arguments."""
        if isinstance(self.choice, dict):
            return _parameters(self._function(self.choice["function"]["name"]))
        return {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": tool["function"]["name"]},
                        "arguments": _parameters(tool["function"]),
                    },
                    "required": ["name", "arguments"],
                }
                for tool in self.tools
            ]
        }

    def forced_call(self, text: str) -> ToolCall | None:
        """The call in an output constrained by `call_schema`; None when it is not one (cut short
        by max_tokens): the caller then gives the text back as content."""
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(self.choice, dict):
            value = {"name": self.choice["function"]["name"], "arguments": value}
        return make_call(value, self.names)

    def _function(self, name: str) -> dict[str, Any]:
        return next(t["function"] for t in self.tools if t["function"]["name"] == name)

    @property
    def names(self) -> frozenset[str]:
        """The functions to look for in the output; none when parsing is off."""
        if self.choice == "none":
            return frozenset()
        return frozenset(tool["function"]["name"] for tool in self.tools)


def _parameters(function: dict[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters")
    return parameters if isinstance(parameters, dict) and parameters else {"type": "object"}


def read_tools(body: dict[str, Any]) -> ToolRequest:
    """`tools` and `tool_choice` from an OpenAI chat request; a 400 for malformed ones."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise EngineError("'tools' must be a list of functions", code="invalid_value")
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(function, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise EngineError(
                f'tools[{i}] must be {{"type": "function", "function": {{"name": ..., '
                '"parameters": {...}}}}',
                code="invalid_value",
            )
    names = {tool["function"]["name"] for tool in tools}
    choice = body.get("tool_choice")
    if choice in (None, "none", "auto"):
        return ToolRequest(tools, choice)
    if choice == "required":
        if not tools:
            raise EngineError("tool_choice 'required' needs tools", code="invalid_value")
        return ToolRequest(tools, choice)
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise EngineError(
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}',
            code="invalid_value",
        )
    if name not in names:
        raise EngineError(
            f"tool_choice names {name!r}, which is not among the tools", code="invalid_value"
        )
    return ToolRequest(tools, choice)


def template_tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """An assistant message's `tool_calls` for a chat template: `arguments` as an object.

    Templates write them with `| tojson` (Qwen2.5, Llama 3.1): a JSON string would come out quoted
    twice. Arguments that are not JSON stay the string they are.
    """
    if not isinstance(calls, list):
        raise EngineError(f"{where}.tool_calls must be a list", code="messages")
    out = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise EngineError(
                f"{where}.tool_calls[{i}] needs function.name and function.arguments",
                code="messages",
            )
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        out.append(
            {
                "id": call.get("id"),
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return out


class ToolCallParser:
    """Splits text arriving in pieces into content and tool calls; see the module docstring.

    feed() returns what can go out now; finish() what is left at the end of the output.
    """

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names
        self._mode = "start"  # start | text | call | json
        self._buf = ""
        self._gap = ""  # whitespace before the open call: given back if the call is not one
        self._trim = False  # just after a call that parsed: its trailing whitespace is dropped
        self._lead = ""  # that whitespace, until it is known whether a failing call follows
        self.calls = 0

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        return self._advance(final=False)

    def finish(self) -> list[Piece]:
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> list[Piece]:
        out: list[Piece] = []
        while True:
            if self._mode == "start":
                head = self._buf.lstrip()
                if not head:  # only whitespace so far: it may lead a bare call
                    if final:
                        out.append(self._buf)
                        self._buf = ""
                    break
                self._mode = "json" if head[0] in "{[" else "text"
            elif self._mode == "json":
                if final:
                    text, self._buf = self._buf, ""
                    calls = self._bare(text)
                    out.extend(calls or [text])
                break
            elif self._mode == "text":
                if not self._text(out, final):
                    break
            elif not self._call(out, final):
                break
        return [piece for piece in out if piece != ""]

    def _text(self, out: list[Piece], final: bool) -> bool:
        """Emit text up to a tag; True when one opened (call mode takes over)."""
        if self._trim:  # just after a call: whitespace goes, unless a call that fails follows
            text = self._buf.lstrip()
            self._lead += self._buf[: len(self._buf) - len(text)]
            self._buf = text
            if not text:
                return False
            self._trim = False
        start = self._buf.find(OPEN)
        if start >= 0:
            before = self._buf[:start]
            text = before.rstrip()
            out.append(text)
            self._gap = before[len(text) :] if text else self._lead + before
            self._lead = ""
            self._buf = self._buf[start + len(OPEN) :]
            self._mode = "call"
            return True
        if not final:
            cut = len(self._buf) - _held(self._buf)
        elif self.calls:
            cut = len(self._buf.rstrip())
        else:
            cut = len(self._buf)
        if cut:
            self._lead = ""
        out.append(self._buf[:cut])
        self._buf = "" if final else self._buf[cut:]
        return False

    def _call(self, out: list[Piece], final: bool) -> bool:
        """Emit the open call once it is closed (or the output ended); True to go on."""
        end = self._buf.find(CLOSE)
        if end < 0 and not final:
            return False
        body = self._buf if end < 0 else self._buf[:end]
        call = self._one(body)
        if call is None:
            out.append(self._gap + OPEN + body + ("" if end < 0 else CLOSE))
        else:
            out.append(call)
            self.calls += 1
            self._trim = True
        self._buf = "" if end < 0 else self._buf[end + len(CLOSE) :]
        self._gap = ""
        self._mode = "text"
        return end >= 0

    def _bare(self, text: str) -> list[ToolCall] | None:
        try:
            value = json.loads(text)
        except ValueError:
            return None
        calls = []
        for item in value if isinstance(value, list) else [value]:
            call = make_call(item, self._names)
            if call is None:
                return None
            calls.append(call)
        self.calls += len(calls)
        return calls or None

    def _one(self, body: str) -> ToolCall | None:
        try:
            return make_call(json.loads(body), self._names)
        except ValueError:
            return None


def make_call(item: Any, names: frozenset[str]) -> ToolCall | None:
    """A call to one of the offered functions with an object of arguments, or None."""
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(name, str) or name not in names:
        return None
    arguments = item.get("arguments", item.get("parameters"))
    if arguments is None:
        arguments = {}
    text = arguments if isinstance(arguments, str) else None
    if text is not None:
        try:
            arguments = json.loads(text)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(name, text or json.dumps(arguments, ensure_ascii=False))


def _held(text: str) -> int:
    """How much of the end of `text` to hold: a possible start of OPEN and the whitespace before."""
    keep = next(
        (n for n in range(min(len(OPEN) - 1, len(text)), 0, -1) if text.endswith(OPEN[:n])), 0
    )
    rest = text[: len(text) - keep]
    return keep + len(rest) - len(rest.rstrip())


def split(text: str, names: frozenset[str]) -> tuple[str, list[ToolCall]]:
    """A whole output as (content, calls): what a non-streaming response carries."""
    parser = ToolCallParser(names)
    pieces = parser.feed(text) + parser.finish()
    content = "".join(piece for piece in pieces if isinstance(piece, str))
    return content, [piece for piece in pieces if isinstance(piece, ToolCall)]
