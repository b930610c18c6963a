"""Builders of tiny random-weight but architecturally real Diffusers pipelines.

Each builder writes a model folder with ``save_pretrained`` so tests load it through the same
``from_pretrained(local_dir)`` path a real model uses. No weights are ever downloaded: the
tokenizer comes from a hand-written byte-level BPE vocabulary, every module from a config.
Sizes are chosen so that 64x64 images and a handful of frames run in well under a second on CPU.
``scale`` widens the SD-shaped model (used by the peak-RSS benchmark to make weights dominate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "TOKENIZER_VOCAB_SIZE",
    "build_tiny_animatediff",
    "build_tiny_lora",
    "build_tiny_sd",
    "build_tiny_sd_inpaint",
    "build_tiny_svd",
    "tiny_clip_tokenizer",
]

_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
TOKENIZER_VOCAB_SIZE = len(_SPECIAL) + 2 * 256


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2 convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def tiny_clip_tokenizer() -> Any:
    """A CLIP tokenizer over bytes only (no merges): every character is a token.

    Checked on build: transformers 5 can silently give a 2-token tokenizer when handed
    arguments (or a folder) it does not understand.
    """
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    tokens = [*_SPECIAL, *symbols, *(s + "</w>" for s in symbols)]
    tokenizer = CLIPTokenizer(
        vocab={tok: i for i, tok in enumerate(tokens)}, merges=[], model_max_length=77
    )
    if len(tokenizer) != TOKENIZER_VOCAB_SIZE:
        raise RuntimeError(
            f"tiny tokenizer has {len(tokenizer)} tokens, not {TOKENIZER_VOCAB_SIZE}"
        )
    return tokenizer


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _sd_parts(*, in_channels: int = 4, scale: int = 1) -> dict[str, Any]:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    _seed(0)
    hidden = 32 * scale
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1 if scale == 1 else 2,
        block_out_channels=(8 * scale, 16 * scale),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=hidden,
        attention_head_dim=2 * scale,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8 * scale,) * 4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=TOKENIZER_VOCAB_SIZE,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
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
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tiny_clip_tokenizer(),
        "scheduler": scheduler,
    }


def build_tiny_sd(path: Path, *, scale: int = 1) -> Path:
    """StableDiffusionPipeline (text->image; image->image and inpaint via from_pipe)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **_sd_parts(scale=scale),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def build_tiny_sd_inpaint(path: Path) -> Path:
    """StableDiffusionInpaintPipeline with a 9-channel UNet (latents + mask + masked image)."""
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline(
        **_sd_parts(in_channels=9),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def build_tiny_animatediff(path: Path) -> Path:
    """AnimateDiffPipeline: the SD parts plus a MotionAdapter mirroring the UNet's channels."""
    from diffusers import AnimateDiffPipeline, MotionAdapter

    parts = _sd_parts()
    _seed(1)
    adapter = MotionAdapter(
        block_out_channels=(8, 16),
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=2,
        motion_max_seq_length=32,
        use_motion_mid_block=False,
    )
    pipe = AnimateDiffPipeline(motion_adapter=adapter, **parts)
    pipe.save_pretrained(path)
    return path


def build_tiny_svd(path: Path) -> Path:
    """StableVideoDiffusionPipeline: image encoder at 224 px, channels in multiples of 32."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    _seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        num_frames=8,
    )
    vae = AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
    )
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=224,
            patch_size=32,
        )
    )
    feature_extractor = CLIPImageProcessor(
        crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        prediction_type="v_prediction",
        timestep_spacing="leading",
        steps_offset=1,
        use_karras_sigmas=True,
    )
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=feature_extractor,
    )
    pipe.save_pretrained(path)
    return path


def build_tiny_lora(path: Path, sd_dir: Path, *, rank: int = 4, seed: int = 7) -> Path:
    """A rank-4 UNet LoRA for the tiny SD model, saved with ``save_lora_weights``.

    B is initialised randomly (peft's default zeros would make the adapter a no-op).
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    _seed(seed)
    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet")
    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights=False,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    layers = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(
        path, unet_lora_layers=layers, safe_serialization=True
    )
    return path
