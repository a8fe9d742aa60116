"""The tool-call parser and the request's tool fields (no model: the engines' tests drive it with
one, through the real stream)."""

from __future__ import annotations

import json

import pytest

from local_runtime.engines.base import EngineError
from local_runtime.engines.toolcalls import (
    ToolCall,
    ToolCallParser,
    read_tools,
    split,
    template_tool_calls,
)

NAMES = frozenset({"get_weather", "get_time"})
WEATHER = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
TIME = '{"name": "get_time", "arguments": {"zone": "CET"}}'


def calls_of(calls: list[ToolCall]) -> list[tuple[str, dict]]:
    return [(call.name, json.loads(call.arguments)) for call in calls]


def streamed(pieces: list[str]) -> tuple[str, list[ToolCall], list[list[object]]]:
    """Feed pieces one by one; return the joined content, the calls and what each feed gave."""
    parser = ToolCallParser(NAMES)
    outs = [parser.feed(piece) for piece in pieces] + [parser.finish()]
    flat = [piece for out in outs for piece in out]
    content = "".join(p for p in flat if isinstance(p, str))
    return content, [p for p in flat if isinstance(p, ToolCall)], outs


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        (  # Qwen2.5 / Hermes: text, then a call
            f"Let me check.\n<tool_call>\n{WEATHER}\n</tool_call>",
            "Let me check.",
            [("get_weather", {"city": "Paris"})],
        ),
        (  # several calls, only whitespace around them
            f"<tool_call>\n{WEATHER}\n</tool_call>\n<tool_call>\n{TIME}\n</tool_call>\n",
            "",
            [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})],
        ),
        (  # the model stopped before its closing tag
            f"<tool_call>{TIME}",
            "",
            [("get_time", {"zone": "CET"})],
        ),
        (  # text after a call is content too
            f"<tool_call>{WEATHER}</tool_call>\nDone.",
            "Done.",
            [("get_weather", {"city": "Paris"})],
        ),
        (  # Llama 3.x: the whole answer is one JSON call, with "parameters"
            ' {"name": "get_time", "parameters": {"zone": "UTC"}}\n',
            "",
            [("get_time", {"zone": "UTC"})],
        ),
        (  # Mistral once [TOOL_CALLS] is stripped: a list of calls
            f"[{WEATHER}, {TIME}]",
            "",
            [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})],
        ),
        (  # arguments sent as a JSON string; a call without arguments
            '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}'
            '</tool_call><tool_call>{"name": "get_time"}</tool_call>',
            "",
            [("get_weather", {"city": "Oslo"}), ("get_time", {})],
        ),
    ],
)
def test_formats(text: str, content: str, calls: list) -> None:
    got_content, got_calls = split(text, NAMES)
    assert got_content == content
    assert calls_of(got_calls) == calls


@pytest.mark.parametrize(
    "text",
    [
        "The weather in Paris is sunny.\n",
        "  \n",
        "a < b and <tool_calls> are not tags; <tool_call",
        '{"answer": 42}',  # a JSON answer, not a call
        "[1, 2, 3]",
        "[]",
        '{"name": "get_weather", "arguments": {"city": "Paris"}} and more',
        f"Sure.\n<tool_call>\n{WEATHER[:-5]}\n</tool_call>\nOK",  # broken JSON
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',  # not an offered function
        '<tool_call>{"name": "get_time", "arguments": "not json"}</tool_call>',
        '<tool_call>{"name": "get_time", "arguments": [1]}</tool_call>',
        '<tool_call>{"name": {"x": 1}}</tool_call>',
        f"<tool_call>{WEATHER[:-1]}",  # cut off before the call's JSON closed
    ],
)
def test_what_is_not_a_call_comes_back_as_it_was(text: str) -> None:
    assert split(text, NAMES) == (text, [])
    for cut in range(len(text) + 1):  # and so it does streamed, however it is cut
        content, calls, _ = streamed([text[:cut], text[cut:]])
        assert (content, calls) == (text, [])


def test_a_bad_call_among_good_ones_is_kept_as_text_with_its_whitespace() -> None:
    text = (
        f"<tool_call>\n{WEATHER}\n</tool_call>\n"
        '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>\n'
        f"<tool_call>\n{TIME}\n</tool_call>"
    )
    content, calls = split(text, NAMES)
    assert content == '\n<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>'
    assert calls_of(calls) == [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]


SAMPLES = [
    f"Let me check.\n<tool_call>\n{WEATHER}\n</tool_call>\n<tool_call>\n{TIME}\n</tool_call>",
    f"Hi <b>there</b> <tool_call>{WEATHER}</tool_call> and then <tool_call>bad</tool_call> bye ",
    f"[{WEATHER}]",
    "no calls at all, < just <tool text\n\n",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_any_cut_of_the_stream_gives_what_the_whole_text_gives(text: str) -> None:
    whole_content, whole_calls = split(text, NAMES)
    for cut in range(len(text) + 1):
        content, calls, _ = streamed([text[:cut], text[cut:]])
        assert content == whole_content, cut
        assert calls_of(calls) == calls_of(whole_calls), cut
    content, calls, _ = streamed(list(text))  # one character at a time
    assert (content, calls_of(calls)) == (whole_content, calls_of(whole_calls))


def test_streaming_holds_back_only_what_may_start_a_tag() -> None:
    _, _, outs = streamed(
        ["Hello <to", "ol", "box> and ", "<tool_", "call>", WEATHER, "</tool_ca", "ll>", " bye"]
    )
    assert outs == [
        ["Hello"],  # " <to" may begin "<tool_call>"
        [],
        [" <toolbox> and"],  # it did not; the space may lead one
        [],
        [],  # the tag opened: the text before it was whitespace, dropped
        [],
        [],
        [outs[7][0]],  # the call, once closed
        ["bye"],  # whitespace after a call goes
        [],
    ]
    assert isinstance(outs[7][0], ToolCall) and outs[7][0].name == "get_weather"


def test_a_leading_brace_is_held_to_the_end() -> None:
    _, _, outs = streamed(["{", '"answer": ', "1}"])
    assert outs == [[], [], [], ['{"answer": 1}']]


def test_call_shapes() -> None:
    call = ToolCall("get_weather", '{"city": "Paris"}')
    assert call.id.startswith("call_") and call.id != ToolCall("x", "{}").id
    assert call.message() == {
        "id": call.id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    head, args = call.deltas(1)
    assert head == {
        "index": 1,
        "id": call.id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert args == {"index": 1, "function": {"arguments": '{"city": "Paris"}'}}


def test_non_ascii_arguments_stay_readable() -> None:
    _, calls = split('<tool_call>{"name": "get_weather", "arguments": {"city": "北京"}}', NAMES)
    assert calls[0].arguments == '{"city": "北京"}'


# --- the request's fields -------------------------------------------------------------------


def tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def test_read_tools() -> None:
    assert read_tools({}).names == frozenset()
    both = [tool("get_weather"), tool("get_time")]
    assert read_tools({"tools": both}).names == NAMES
    assert read_tools({"tools": both, "tool_choice": "auto"}).names == NAMES
    assert read_tools({"tools": both, "tool_choice": "required"}).names == NAMES
    assert read_tools({"tools": both, "tool_choice": "none"}).names == frozenset()
    named = {"type": "function", "function": {"name": "get_time"}}
    request = read_tools({"tools": both, "tool_choice": named})
    assert request.choice == named and request.tools == both


@pytest.mark.parametrize(
    ("choice", "hermes", "opening"),
    [
        (None, True, ""),
        ("auto", True, ""),
        ("none", True, ""),
        ("required", True, '<tool_call>\n{"name": "'),
        ("required", False, '{"name": "'),
        (
            {"function": {"name": "get_time"}},
            True,
            '<tool_call>\n{"name": "get_time", "arguments": ',
        ),
        ({"function": {"name": "get_time"}}, False, '{"name": "get_time", "arguments": '),
    ],
)
def test_a_forcing_choice_opens_the_call(choice: object, hermes: bool, opening: str) -> None:
    request = read_tools({"tools": [tool("get_weather"), tool("get_time")], "tool_choice": choice})
    assert request.forces == bool(opening)
    assert request.opening(hermes) == opening


@pytest.mark.parametrize("hermes", [True, False])
@pytest.mark.parametrize(
    ("choice", "rest"),
    [
        ({"function": {"name": "get_time"}}, '{"zone": "CET"}}'),
        ("required", 'get_time", "arguments": {"zone": "CET"}}'),
    ],
)
def test_the_opening_and_the_models_rest_parse_as_one_call(
    hermes: bool, choice: object, rest: str
) -> None:
    """What the engine feeds its parser: the opening it wrote, then what the model went on with."""
    opening = read_tools({"tools": [tool("get_time")], "tool_choice": choice}).opening(hermes)
    ending = "\n</tool_call>" if hermes else ""
    content, calls = split(opening + rest + ending, frozenset({"get_time"}))
    assert (content, calls_of(calls)) == ("", [("get_time", {"zone": "CET"})])
    # a rest that does not make a call is given back as text, with the opening: nothing is lost
    content, calls = split(opening + "I'd rather not.", frozenset({"get_time"}))
    assert (content, calls) == (opening + "I'd rather not.", [])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"tools": {"get_weather": {}}}, "must be a list"),
        ({"tools": [{"type": "function", "name": "x"}]}, r"tools\[0\]"),
        ({"tools": [{"type": "retrieval", "function": {"name": "x"}}]}, r"tools\[0\]"),
        ({"tools": [tool("x")], "tool_choice": "always"}, "tool_choice must be"),
        ({"tool_choice": "required"}, "needs tools"),
        ({"tools": [tool("x")], "tool_choice": {"function": {"name": "y"}}}, "not among"),
    ],
)
def test_bad_tool_fields_are_400(body: dict, needle: str) -> None:
    with pytest.raises(EngineError, match=needle) as err:
        read_tools(body)
    assert err.value.status == 400


def test_history_calls_get_object_arguments_for_templates() -> None:
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "plain"}},
        {"id": "c", "type": "function", "function": {"name": "h", "arguments": {"y": 2}}},
    ]
    out = template_tool_calls(calls, "messages[1]")
    assert [c["function"]["arguments"] for c in out] == [{"x": 1}, "plain", {"y": 2}]
    assert [c["id"] for c in out] == ["a", "b", "c"]
    with pytest.raises(EngineError, match=r"messages\[1\]\.tool_calls\[0\]"):
        template_tool_calls([{"function": {}}], "messages[1]")
