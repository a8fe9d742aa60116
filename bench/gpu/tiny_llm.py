"""Random-weight chat models of real shapes (Qwen2.5-0.5B, Qwen2.5-7B) with a word-level
tokenizer as large as the model's vocabulary and a ChatML template, built offline in seconds.

Compute per token equals the real model's (same layers, widths and vocabulary); the text is
noise. The tokenizer never produces an unknown id, so decoding any generated id works.
"""

from __future__ import annotations

import json
from pathlib import Path

SHAPES = {
    "qwen2.5-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "qwen2.5-7b": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 4096,
        "tie_word_embeddings": True,
    },
}
CHATML = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def build(shape: str, root: Path, dtype: str = "bfloat16") -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    cfg = SHAPES[shape]
    out = root / shape
    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for i in range(len(specials), cfg["vocab_size"]):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    fast.chat_template = CHATML
    fast.save_pretrained(out)
    # Llama with biased q/k/v projections is Qwen2's architecture; Llama's config keeps our
    # tokenizer (transformers maps qwen2 configs to its own BPE tokenizer class).
    conf = LlamaConfig(
        max_position_embeddings=32768,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
        bos_token_id=None,
        attention_bias=True,
        rope_theta=1000000.0,
        **cfg,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(conf).to(getattr(torch, dtype))
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    model.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    tc = json.loads(cfg_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(tc))
    return out


def prompt_words(n: int, seed: int) -> str:
    return " ".join(f"w{10 + (seed * 131 + k * 17) % 4000}" for k in range(n))
