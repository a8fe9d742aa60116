"""Tiny real models built offline at test time (no model hub here).

The weights are random, so outputs are gibberish, but every engine path (config parsing, tokenizer,
chat template, generation, pipeline plumbing) is the real one. Each builder writes a folder that
`from_pretrained(path, local_files_only=True)` loads, and returns its path. Builders are idempotent:
a folder that already holds a complete model is reused (pass a cache dir to share across modules).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# ChatML, the template Qwen/SmolLM2 use: what `apply_chat_template` renders for the tiny llama.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "hello world this is a test",
    "The capital of France is Paris.",
    "modelport serves local models and remote model APIs behind one gateway.",
    "Embeddings turn sentences into vectors; rerankers order documents by relevance.",
    "A quick brown fox jumps over the lazy dog 0123456789.",
    "user assistant system: what is the answer? The answer is forty-two!",
]


def _done(path: Path, marker: str) -> bool:
    return (path / marker).exists()


def build_tiny_llama(path: str | Path, *, seed: int = 0) -> Path:
    """A 2-layer LlamaForCausalLM (~2.5 MB) with a byte-level BPE tokenizer and a ChatML template.

    Loadable by transformers (AutoModelForCausalLM/AutoTokenizer) and by vLLM.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path)
    if _done(out, "model.safetensors") and _done(out, "tokenizer_config.json"):
        return out
    out.mkdir(parents=True, exist_ok=True)

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out)
    # Loaders pick the tokenizer class from this field; the generic fast class needs no vocab files.
    cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg["chat_template"] = CHATML_TEMPLATE
    cfg_path.write_text(json.dumps(tok_cfg, indent=2))

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tok.token_to_id("<|im_start|>"),
        eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=tok.token_to_id("<|endoftext|>"),
    )
    config.dtype = "float32"
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    return out


def clip_char_vocab() -> dict[str, int]:
    """A character-level CLIP vocab: every printable ASCII char, bare and word-final ("a</w>")."""
    chars = [chr(c) for c in range(33, 127)]
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def save_sd_pipeline(out: Path, *, unet: Any, vae: Any, text: tuple[int, int, int, int]) -> Path:
    """Save a StableDiffusionPipeline folder around `unet` and `vae`: a CLIP text encoder of shape
    `text` = (hidden, layers, heads, ffn) with the character-level tokenizer, and DDIM."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    hidden, layers, heads, ffn = text
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / "_tokenizer_src"
    tok_dir.mkdir(exist_ok=True)
    vocab = clip_char_vocab()
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        vocab_file=str(tok_dir / "vocab.json"),
        merges_file=str(tok_dir / "merges.txt"),
        model_max_length=77,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
            hidden_size=hidden,
            intermediate_size=ffn,
            num_attention_heads=heads,
            num_hidden_layers=layers,
            vocab_size=len(vocab),
            max_position_embeddings=77,
            projection_dim=hidden,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_sd(path: str | Path, *, seed: int = 0) -> Path:
    """A ~8 MB StableDiffusionPipeline folder (UNet (32, 64), 2-block VAE, 2-layer CLIP, DDIM).

    The VAE downsamples by 2, so a 64x64 image has a 32x32 latent; 2 steps take well under a second
    on CPU. Images are noise, but the real pipeline runs.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    out = Path(path)
    if _done(out, "model_index.json"):
        return out
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    return save_sd_pipeline(out, unet=unet, vae=vae, text=(32, 2, 4, 37))
