"""A tiny llama that answers every chat with one fixed script, built offline at test time.

Random weights never write a tool call, so the code that parses one could only be reached with a
mocked output. This model writes a known text through the real path instead (tokenizer, chat
template, the engine's scheduler, detokenizer and stream). How: every layer's output projections
are zero, so the last hidden state is the current token's embedding; the script's tokens get
orthogonal embeddings, and the untied output head maps each to the next one by a logit margin of
~160, so greedy and sampled decoding (temperature up to 2) pick it alike. Each piece of the script
is an added token of its own, so no token repeats and each next token is determined; the script
starts after the last token of the generation prompt and ends with the end-of-turn token.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.tiny_models import build_tiny_llama

# What the model says: text, then two Hermes-style calls. Token boundaries fall inside both tags
# ("<tool" | "_call>", "</tool" | "_call>"), as they do for real tokenizers that lack them.
TOOL_SCRIPT = (
    "Let me check.",
    "<tool",
    '_call>\n{"name": "get_weather", ',
    '"arguments": {"city": "Paris"}}\n</tool',
    "_call>",
    '\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
)

# Qwen2.5's way of rendering tools, calls and results (ChatML), plus a line for a named
# tool_choice, which Qwen's own template does not read.
TOOLS_TEMPLATE = r"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
    {{- '# Tools\n\nYou are provided with function signatures within <tools></tools>:\n<tools>' }}
    {%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and '
        'arguments within <tool_call></tool_call> XML tags.' }}
    {%- if tool_choice is mapping %}{{- '\nCall ' + tool_choice.function.name + ' now.' }}{%- endif %}
    {{- '<|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first)
          or (message.role == 'assistant' and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant' }}
        {%- if message.content %}{{- '\n' + message.content }}{%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
            {{- '\n<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""


def build_scripted_llama(
    path: str | Path,
    script: tuple[str, ...] = TOOL_SCRIPT,
    chat_template: str = TOOLS_TEMPLATE,
    branches: tuple[tuple[str, ...], ...] = (),
) -> Path:
    """A model folder (transformers) whose every chat answer is "".join(script).

    `branches`: other chains, each started by its first piece: a prompt that ends with that piece
    (an added token) is answered with the rest of the branch.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(path)
    if (out / "model.safetensors").exists():
        return out
    base = build_tiny_llama(out / "_base")
    tok = AutoTokenizer.from_pretrained(base)
    tok.add_tokens([*script, *(piece for branch in branches for piece in branch)])
    tok.chat_template = chat_template
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False
    )
    start = tok(prompt, add_special_tokens=False)["input_ids"][-1]
    chains = [[start, *tok.convert_tokens_to_ids(list(script))]]
    chains += [tok.convert_tokens_to_ids(list(branch)) for branch in branches]

    config = LlamaConfig.from_pretrained(base)
    config.vocab_size = len(tok)
    config.tie_word_embeddings = False
    config.max_position_embeddings = (
        4096  # tool schemas take many of this byte-level vocab's tokens
    )
    model = LlamaForCausalLM(config)
    links = [
        (token, following)
        for chain in chains
        for token, following in zip(chain, [*chain[1:], config.eos_token_id], strict=True)
    ]
    assert len({token for token, _ in links}) == len(links), "pieces must be distinct tokens"
    assert len(links) <= config.hidden_size
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        head.zero_()
        for k, (token, following) in enumerate(links):
            embed[token] = 0.0
            embed[token, k] = 1.0  # after RMSNorm: 16 in dimension k (hidden size 256)
            head[following, k] = 10.0
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg["chat_template"] = chat_template
    cfg_path.write_text(json.dumps(tok_cfg, indent=2))
    model.save_pretrained(out, safe_serialization=True)
    return out
